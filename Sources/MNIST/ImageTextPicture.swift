// Text pictures of small float images (a 28x28 input, say) for terminals and logs, as `--show`
// prints them. Deliberately left out: colour, and downsampling of large images.
import Foundation

/// Renders intensities 0...1 as characters, light ink drawn dark-to-dense: " .:-=+*#%@".
public enum TextPicture {
    /// The ten shades, from 0 (space) to 1 ("@").
    public static let shades: [Character] = Array(" .:-=+*#%@")

    /// One line per row; each pixel is the shade nearest its value (clamped to 0...1), repeated
    /// `columnsPerPixel` times (2 by default, since terminal cells are about twice as tall as
    /// wide). With `framed`, a `+--+` border surrounds the picture so blank margins stay visible.
    public static func render(
        _ pixels: [Float], width: Int, height: Int, columnsPerPixel: Int = 2,
        framed: Bool = true
    ) -> String {
        requireArgument(pixels.count == width * height, "pixels must be [height, width]")
        var lines = [String]()
        let rule = "+" + String(repeating: "-", count: width * columnsPerPixel) + "+"
        if framed { lines.append(rule) }
        for y in 0..<height {
            var line = framed ? "|" : ""
            for x in 0..<width {
                let raw = pixels[y * width + x]
                let value = raw.isNaN ? 0 : min(1, max(0, raw))
                let shade = shades[Int((value * Float(shades.count - 1)).rounded())]
                line += String(repeating: shade, count: columnsPerPixel)
            }
            lines.append(framed ? line + "|" : line)
        }
        if framed { lines.append(rule) }
        return lines.joined(separator: "\n")
    }

    /// Pictures (each a block of lines) next to each other, a space apart, lines aligned at the top.
    public static func sideBySide(_ pictures: [String]) -> String {
        let blocks = pictures.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        let widths = blocks.map { $0.map(\.count).max() ?? 0 }
        let height = blocks.map(\.count).max() ?? 0
        return (0..<height).map { row in
            zip(blocks, widths).map { block, width in
                let line = row < block.count ? block[row] : ""
                return line.padding(toLength: width, withPad: " ", startingAt: 0)
            }.joined(separator: " ")
        }.joined(separator: "\n")
    }

    /// Renders bytes 0...255 (an IDX image, say).
    public static func render(
        _ bytes: [UInt8], width: Int, height: Int, columnsPerPixel: Int = 2,
        framed: Bool = true
    ) -> String {
        render(
            bytes.map { Float($0) / 255 }, width: width, height: height, columnsPerPixel: columnsPerPixel,
            framed: framed)
    }
}
