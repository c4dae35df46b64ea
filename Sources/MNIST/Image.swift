// The in-memory raster every image decoder produces and every encoder and the preprocessor consume:
// 8-bit samples, row-major, interleaved channels, sRGB-encoded, straight (not premultiplied) alpha.
// Decoding, encoding and preprocessing live in their own files; this one only holds the pixels and
// the channel-layout conversions. Deliberately left out: colour management and 16-bit storage
// (every decoder reduces deeper samples to 8 bits, which is all the 28x28 preprocessing needs).
import Foundation

/// An image decoded from a file: `[height, width, channels]` bytes, 0 = black, 255 = white / opaque.
public struct RasterImage: Sendable, Equatable {
    /// How the channels of one pixel are laid out.
    public enum Layout: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// One grey channel.
        case grey = 1
        /// Grey then alpha.
        case greyAlpha = 2
        /// Red, green, blue.
        case rgb = 3
        /// Red, green, blue, alpha.
        case rgba = 4

        /// Bytes per pixel.
        public var channelCount: Int { rawValue }
        /// Whether the last channel is alpha.
        public var hasAlpha: Bool { self == .greyAlpha || self == .rgba }
        /// Whether the pixel has three colour channels.
        public var isColour: Bool { self == .rgb || self == .rgba }

        public var description: String {
            switch self {
            case .grey: return "grey"
            case .greyAlpha: return "grey+alpha"
            case .rgb: return "RGB"
            case .rgba: return "RGBA"
            }
        }
    }

    /// Width in pixels (columns), at least 1.
    public let width: Int
    /// Height in pixels (rows), at least 1.
    public let height: Int
    /// The channel layout of `samples`.
    public let layout: Layout
    /// Samples, row-major with interleaved channels: `[height, width, layout.channelCount]`.
    public var samples: [UInt8]

    /// Wraps `samples`; traps unless it holds exactly `width * height * layout.channelCount` bytes.
    public init(width: Int, height: Int, layout: Layout, samples: [UInt8]) {
        requireArgument(width > 0 && height > 0, "an image has at least one pixel")
        requireArgument(
            samples.count == width * height * layout.channelCount, "samples must hold width*height*channels bytes")
        self.width = width
        self.height = height
        self.layout = layout
        self.samples = samples
    }

    /// An image filled with one pixel value (`pixel.count == layout.channelCount`).
    public init(width: Int, height: Int, layout: Layout, filledWith pixel: [UInt8]) {
        requireArgument(pixel.count == layout.channelCount, "the fill pixel must have one value per channel")
        var samples = [UInt8]()
        samples.reserveCapacity(width * height * layout.channelCount)
        for _ in 0..<(width * height) { samples.append(contentsOf: pixel) }
        self.init(width: width, height: height, layout: layout, samples: samples)
    }

    /// The number of pixels (width * height).
    public var pixelCount: Int { width * height }

    /// The sample of `channel` at column `x`, row `y`. The indices must be in range (an index past
    /// the samples traps).
    public subscript(x: Int, y: Int, channel: Int) -> UInt8 {
        get { samples[(y * width + x) * layout.channelCount + channel] }
        set { samples[(y * width + x) * layout.channelCount + channel] = newValue }
    }

    /// The same picture in another channel layout.
    ///
    /// Colour to grey uses the Rec. 601 luma weights (0.299, 0.587, 0.114) on the sRGB-encoded
    /// values, rounded; grey to colour copies the grey value; a missing alpha becomes 255 (opaque);
    /// a dropped alpha is simply discarded (`greyCompositedOverWhite()` flattens instead).
    public func converted(to target: Layout) -> RasterImage {
        if target == layout { return self }
        let n = pixelCount
        let sourceChannels = layout.channelCount
        let targetChannels = target.channelCount
        var out = [UInt8](repeating: 255, count: n * targetChannels)
        samples.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let s = i * sourceChannels
                    let d = i * targetChannels
                    let alpha: UInt8 = layout.hasAlpha ? src[s + sourceChannels - 1] : 255
                    if target.isColour {
                        if layout.isColour {
                            dst[d] = src[s]; dst[d + 1] = src[s + 1]; dst[d + 2] = src[s + 2]
                        } else {
                            dst[d] = src[s]; dst[d + 1] = src[s]; dst[d + 2] = src[s]
                        }
                    } else {
                        dst[d] = layout.isColour ? RasterImage.luma(src[s], src[s + 1], src[s + 2]) : src[s]
                    }
                    if target.hasAlpha { dst[d + targetChannels - 1] = alpha }
                }
            }
        }
        return RasterImage(width: width, height: height, layout: target, samples: out)
    }

    /// One grey byte per pixel with any alpha composited over white: `[height, width]`.
    ///
    /// `grey = (alpha * value + (255 - alpha) * 255) / 255`, rounded; fully transparent pixels are
    /// white whatever colour they hold. This is step 1 of the MNIST preprocessing.
    public func greyCompositedOverWhite() -> [UInt8] {
        let n = pixelCount
        var out = [UInt8](repeating: 0, count: n)
        samples.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                // One loop per layout keeps the per-pixel work branch-free.
                switch layout {
                case .grey:
                    for i in 0..<n { dst[i] = src[i] }
                case .greyAlpha:
                    for i in 0..<n { dst[i] = RasterImage.overWhite(src[2 * i], alpha: src[2 * i + 1]) }
                case .rgb:
                    for i in 0..<n { dst[i] = RasterImage.luma(src[3 * i], src[3 * i + 1], src[3 * i + 2]) }
                case .rgba:
                    for i in 0..<n {
                        let value = RasterImage.luma(src[4 * i], src[4 * i + 1], src[4 * i + 2])
                        dst[i] = RasterImage.overWhite(value, alpha: src[4 * i + 3])
                    }
                }
            }
        }
        return out
    }

    /// `value` with opacity `alpha` over white, rounded: (a * v + (255 - a) * 255) / 255.
    /// (Exact for every pair; `ImageFileTests` checks all 65536.)
    @inline(__always)
    static func overWhite(_ value: UInt8, alpha: UInt8) -> UInt8 {
        let a = UInt32(alpha)
        // round(x / 255) for x <= 65025 without a division: t = x + 128; (t + t >> 8) >> 8.
        let t = a * UInt32(value) + (255 - a) * 255 + 128
        return UInt8((t + (t >> 8)) >> 8)
    }

    /// Rec. 601 luma of an sRGB triple, in fixed point (weights sum to 2^16), rounded.
    @inline(__always)
    static func luma(_ red: UInt8, _ green: UInt8, _ blue: UInt8) -> UInt8 {
        // 0.299, 0.587, 0.114 scaled by 65536 (19595 + 38470 + 7471 = 65536).
        let sum = 19595 * UInt32(red) + 38470 * UInt32(green) + 7471 * UInt32(blue)
        return UInt8((sum + 32768) >> 16)
    }
}

/// Traps with `message` unless `condition` holds, in every build configuration.
///
/// The MNIST module is compiled with -O, where a failed `precondition` stops the program without
/// its message; the public entry points of the image code check their arguments with this instead,
/// so that a misuse stops the program saying what was wrong.
@inline(__always)
func requireArgument(
    _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file,
    line: UInt = #line
) {
    if !condition { fatalError(message(), file: file, line: line) }
}
