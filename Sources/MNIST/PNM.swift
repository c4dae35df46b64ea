// Binary netpbm images: PGM (P5, grey) and PPM (P6, colour), any maxval 1...65535, with '#'
// comments anywhere in the header. Reading checks the declared size before allocating; writing is
// the trivial inverse. Deliberately left out: plain-text variants (P1-P3), PBM (P4), PAM (P7), and
// multi-image files (bytes after the first raster are ignored).
import Foundation

/// PGM/PPM decoding and encoding.
public enum PNM {
    /// Decodes a binary PGM (P5) or PPM (P6) file into a grey or RGB image.
    ///
    /// Samples are rescaled from 0...maxval to 0...255 with rounding (16-bit samples, maxval > 255,
    /// are big-endian as the format says). Throws `.truncated` when the header or raster ends early,
    /// `.zeroSized`/`.tooLarge` for bad dimensions, `.corrupt` for malformed headers or samples above
    /// maxval.
    public static func decode(_ bytes: [UInt8]) throws -> RasterImage {
        if bytes.isEmpty { throw ImageFileError.empty }
        let layout: RasterImage.Layout
        let format: String
        switch ImageFileFormat.detect(bytes) {
        case .pgm: layout = .grey; format = "PGM"
        case .ppm: layout = .rgb; format = "PPM"
        case .png: throw ImageFileError.unsupportedFormat(kind: "a PNG image (use PNG.decode)")
        case .jpeg: throw ImageFileError.unsupportedFormat(kind: "a JPEG image (use JPEG.decode)")
        case .other(let kind): throw ImageFileError.unsupportedFormat(kind: kind)
        }

        var reader = HeaderReader(bytes: bytes, format: format)
        let width = try reader.readNumber(named: "width")
        let height = try reader.readNumber(named: "height")
        let maxValue = try reader.readNumber(named: "maxval")
        guard (1...65535).contains(maxValue) else {
            throw ImageFileError.corrupt(format: format, detail: "maxval \(maxValue) is outside 1...65535")
        }
        // Exactly one whitespace byte separates maxval from the raster.
        guard reader.offset < bytes.count else {
            throw ImageFileError.truncated(
                format: format, detail: "the file ends right after the header, before the raster")
        }
        guard HeaderReader.isWhitespace(bytes[reader.offset]) else {
            throw ImageFileError.corrupt(format: format, detail: "no whitespace after maxval at byte \(reader.offset)")
        }
        let rasterStart = reader.offset + 1
        try ImageFile.checkDimensions(format: format, width: width, height: height)

        let sampleCount = width * height * layout.channelCount
        let bytesPerSample = maxValue > 255 ? 2 : 1
        let available = bytes.count - rasterStart
        guard available >= sampleCount * bytesPerSample else {
            throw ImageFileError.truncated(
                format: format,
                detail: "the raster holds \(available) of the \(sampleCount * bytesPerSample) bytes a "
                    + "\(width)x\(height) image with maxval \(maxValue) needs")
        }

        var samples = [UInt8](repeating: 0, count: sampleCount)
        var badSample: (index: Int, value: Int)?
        bytes.withUnsafeBufferPointer { source in
            samples.withUnsafeMutableBufferPointer { target in
                if maxValue == 255 {
                    for i in 0..<sampleCount { target[i] = source[rasterStart + i] }
                    return
                }
                // value * 255 / maxval, rounded, through a table of maxval + 1 entries.
                let table = (0...maxValue).map { UInt8(($0 * 255 + maxValue / 2) / maxValue) }
                for i in 0..<sampleCount {
                    let value =
                        bytesPerSample == 1
                        ? Int(source[rasterStart + i])
                        : Int(source[rasterStart + 2 * i]) << 8 | Int(source[rasterStart + 2 * i + 1])
                    if value > maxValue {
                        if badSample == nil { badSample = (i, value) }
                        continue
                    }
                    target[i] = table[value]
                }
            }
        }
        if let badSample {
            throw ImageFileError.corrupt(
                format: format, detail: "sample \(badSample.index) is \(badSample.value), above maxval \(maxValue)")
        }
        return RasterImage(width: width, height: height, layout: layout, samples: samples)
    }

    /// Encodes an 8-bit image as P5 (grey layouts) or P6 (colour layouts), maxval 255.
    /// Alpha is composited over white first, since netpbm has no alpha channel.
    public static func encode(_ image: RasterImage) -> [UInt8] {
        let flat: RasterImage
        switch image.layout {
        case .grey, .rgb: flat = image
        case .greyAlpha:
            flat = RasterImage(
                width: image.width, height: image.height, layout: .grey, samples: image.greyCompositedOverWhite())
        case .rgba:
            var rgb = image.converted(to: .rgb)
            for i in 0..<image.pixelCount {
                let alpha = UInt32(image.samples[4 * i + 3])
                for c in 0..<3 {
                    let mixed = alpha * UInt32(image.samples[4 * i + c]) + (255 - alpha) * 255
                    rgb.samples[3 * i + c] = UInt8((mixed + 127) / 255)
                }
            }
            flat = rgb
        }
        var out = Array("\(flat.layout == .grey ? "P5" : "P6")\n\(flat.width) \(flat.height)\n255\n".utf8)
        out.append(contentsOf: flat.samples)
        return out
    }

    /// Encodes samples (`[height, width, channels]`, each at most `maxValue`) as P5 (`.grey`) or
    /// P6 (`.rgb`) with the given maxval, two big-endian bytes per sample when maxval > 255.
    public static func encode(
        width: Int, height: Int, layout: RasterImage.Layout, samples: [UInt16],
        maxValue: Int, comment: String? = nil
    ) -> [UInt8] {
        requireArgument(layout == .grey || layout == .rgb, "netpbm P5/P6 holds grey or RGB only")
        requireArgument((1...65535).contains(maxValue), "maxval must be in 1...65535")
        requireArgument(
            samples.count == width * height * layout.channelCount, "samples must hold width*height*channels values")
        var header = layout == .grey ? "P5\n" : "P6\n"
        if let comment { header += "# \(comment)\n" }
        header += "\(width) \(height)\n\(maxValue)\n"
        var out = Array(header.utf8)
        for value in samples {
            if maxValue > 255 { out.append(UInt8(value >> 8)) }
            out.append(UInt8(truncatingIfNeeded: value))
        }
        return out
    }

    /// Reads the whitespace- and comment-separated decimal fields of a netpbm header.
    private struct HeaderReader {
        let bytes: [UInt8]
        let format: String
        /// Starts after the two magic bytes.
        var offset = 2

        static func isWhitespace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0B || byte == 0x0C
        }

        /// Skips whitespace and comments, then reads one unsigned decimal number.
        mutating func readNumber(named name: String) throws -> Int {
            var sawSeparator = false
            while offset < bytes.count {
                let byte = bytes[offset]
                if Self.isWhitespace(byte) {
                    offset += 1
                    sawSeparator = true
                } else if byte == UInt8(ascii: "#") {
                    while offset < bytes.count && bytes[offset] != 0x0A && bytes[offset] != 0x0D { offset += 1 }
                    sawSeparator = true
                } else {
                    break
                }
            }
            guard offset < bytes.count else {
                throw ImageFileError.truncated(format: format, detail: "the header ends before the \(name)")
            }
            guard sawSeparator else {
                throw ImageFileError.corrupt(
                    format: format, detail: "no whitespace before the \(name) at byte \(offset)")
            }
            var value = 0
            var digits = 0
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) {
                value = min(value * 10 + Int(bytes[offset] - UInt8(ascii: "0")), 1 << 40)  // saturate, never overflow
                digits += 1
                offset += 1
            }
            guard digits > 0 else {
                throw ImageFileError.corrupt(
                    format: format, detail: "expected the \(name) (a decimal number) at byte \(offset)")
            }
            guard offset < bytes.count else {
                throw ImageFileError.truncated(format: format, detail: "the header ends inside the \(name)")
            }
            return value
        }
    }
}
