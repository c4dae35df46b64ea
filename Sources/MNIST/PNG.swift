// PNG reading and writing through libpng's simplified API (png_image_*), which reports errors in
// `png_image.message` instead of longjmp-ing out of the caller, so it is safe to call from Swift.
// Before libpng sees a byte, a chunk walk checks the signature, the IHDR dimensions (zero size, the
// 50-megapixel limit) and that the chunk sequence reaches IEND (truncation), so those errors are
// precise and no pixel memory is allocated for a hostile header.
// Deliberately left out: writing interlaced or sub-8-bit files (the simplified writer can't; the
// tests build such files by hand), text chunks, colour management beyond libpng's sRGB handling.
import CPNG
import Foundation

/// PNG decoding and encoding.
public enum PNG {
    /// The libpng version linked at run time, for example "1.6.39".
    public static var libpngVersion: String {
        guard let version = png_get_libpng_ver(nil) else { return "unknown" }
        return String(cString: version)
    }

    /// The libpng version as a number: major * 10000 + minor * 100 + release (10639 for 1.6.39).
    public static var libpngVersionNumber: Int { Int(png_access_version_number()) }

    // png_image format values (png.h PNG_FORMAT_*); compound macros do not import into Swift.
    private static let formatFlagAlpha: UInt32 = 0x01
    private static let formatFlagColour: UInt32 = 0x02
    private static let formatFlagLinear: UInt32 = 0x04
    /// PNG_IMAGE_FLAG_16BIT_sRGB: a 16-bit file without gAMA/sRGB chunks holds sRGB-encoded values.
    private static let flag16BitSRGB: UInt32 = 0x04

    /// The simplified-API format for a layout: GRAY = 0, GA = 1, RGB = 2, RGBA = 3.
    private static func format(for layout: RasterImage.Layout) -> UInt32 { UInt32(layout.rawValue - 1) }

    /// Decodes a PNG of any colour type, bit depth and interlacing that libpng reads.
    ///
    /// The result keeps the file's channel layout (grey, grey+alpha, RGB or RGBA; palette files
    /// become RGB, or RGBA when they carry tRNS transparency; grey files with tRNS become
    /// grey+alpha). Samples are 8-bit sRGB: sub-8-bit grey is scaled to 0...255; 16-bit files are
    /// linearised by libpng — from their gAMA/sRGB chunks when present (libpng's own 16-bit files
    /// are linear), as sRGB-encoded (gamma 2.2) when the file says nothing, which is what most
    /// tools mean — and re-encoded here with gamma 2.2, so an untagged file yields its top bytes
    /// (within 1). Colour under partial 16-bit alpha loses precision as alpha nears 0.
    public static func decode(_ bytes: [UInt8]) throws -> RasterImage {
        if bytes.isEmpty { throw ImageFileError.empty }
        let header = try walkChunks(bytes)
        try ImageFile.checkDimensions(format: "PNG", width: header.width, height: header.height)

        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        return try bytes.withUnsafeBytes { raw -> RasterImage in
            defer { png_image_free(&image) }
            guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
                throw readError(message(of: &image))
            }
            let width = Int(image.width)
            let height = Int(image.height)
            let layout: RasterImage.Layout
            switch image.format & (formatFlagAlpha | formatFlagColour) {
            case 0: layout = .grey
            case formatFlagAlpha: layout = .greyAlpha
            case formatFlagColour: layout = .rgb
            default: layout = .rgba
            }
            image.flags |= flag16BitSRGB
            let stride = png_int_32(width * layout.channelCount)
            if header.bitDepth == 16 {
                // libpng 1.6.39's simplified reader scrambles rows of interlaced 16-bit files when
                // it reduces them to 8 bits itself; its 16-bit linear output is right, so 16-bit
                // files (interlaced or not, for consistency) are read linear and encoded here.
                image.format = format(for: layout) | formatFlagLinear
                var linear = [UInt16](repeating: 0, count: width * height * layout.channelCount)
                let finished = linear.withUnsafeMutableBytes { buffer in
                    png_image_finish_read(&image, nil, buffer.baseAddress, stride, nil)
                }
                guard finished != 0 else { throw readError(message(of: &image)) }
                return RasterImage(
                    width: width, height: height, layout: layout,
                    samples: gammaEncoded(linear, layout: layout))
            }
            image.format = format(for: layout)
            var samples = [UInt8](repeating: 0, count: width * height * layout.channelCount)
            let finished = samples.withUnsafeMutableBytes { buffer in
                png_image_finish_read(&image, nil, buffer.baseAddress, stride, nil)
            }
            guard finished != 0 else { throw readError(message(of: &image)) }
            return RasterImage(width: width, height: height, layout: layout, samples: samples)
        }
    }

    /// 8-bit gamma-2.2 encoding of each 16-bit linear value: `round(255 * (v / 65535)^(1/2.2))`.
    /// Gamma 2.2 is the curve libpng itself uses for "sRGB" when it linearises a 16-bit file, so an
    /// untagged 16-bit file comes back as its own top byte (within 1).
    private static let gammaTable: [UInt8] = (0...65535).map {
        UInt8((pow(Double($0) / 65535, 1 / 2.2) * 255).rounded())
    }

    /// Converts libpng's 16-bit linear samples (colour premultiplied by alpha when there is alpha)
    /// to 8-bit gamma-encoded straight-alpha samples.
    private static func gammaEncoded(_ linear: [UInt16], layout: RasterImage.Layout) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: linear.count)
        let channels = layout.channelCount
        gammaTable.withUnsafeBufferPointer { table in
            linear.withUnsafeBufferPointer { source in
                out.withUnsafeMutableBufferPointer { target in
                    guard layout.hasAlpha else {
                        for i in 0..<source.count { target[i] = table[Int(source[i])] }
                        return
                    }
                    for pixel in 0..<(source.count / channels) {
                        let base = pixel * channels
                        let alpha = Int(source[base + channels - 1])
                        target[base + channels - 1] = UInt8((alpha + 128) / 257)
                        for c in 0..<(channels - 1) {
                            // Un-premultiply; a fully transparent pixel's colour is black.
                            let straight =
                                alpha == 0 ? 0 : min(65535, (Int(source[base + c]) * 65535 + alpha / 2) / alpha)
                            target[base + c] = table[straight]
                        }
                    }
                }
            }
        }
        return out
    }

    /// Encodes an 8-bit image as a non-interlaced PNG of the same layout (colour type).
    public static func encode(_ image: RasterImage) throws -> [UInt8] {
        try image.samples.withUnsafeBytes { raw in
            try write(width: image.width, height: image.height, format: format(for: image.layout), pixels: raw)
        }
    }

    /// Encodes 16-bit samples (`[height, width, layout.channelCount]`) as a 16-bit PNG.
    ///
    /// libpng's simplified writer treats 16-bit samples as *linear* light (colour premultiplied by
    /// alpha when there is alpha) and records gAMA 1.0, so `decode` of the result returns the
    /// gamma-2.2 encoding of `samples / 65535`, not `samples >> 8`.
    public static func encode16(width: Int, height: Int, layout: RasterImage.Layout, samples: [UInt16]) throws
        -> [UInt8]
    {
        requireArgument(width > 0 && height > 0, "an image has at least one pixel")
        requireArgument(
            samples.count == width * height * layout.channelCount, "samples must hold width*height*channels values")
        return try samples.withUnsafeBytes { raw in
            try write(width: width, height: height, format: format(for: layout) | formatFlagLinear, pixels: raw)
        }
    }

    private static func write(width: Int, height: Int, format: UInt32, pixels: UnsafeRawBufferPointer) throws -> [UInt8]
    {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = format
        defer { png_image_free(&image) }
        let stride = png_int_32(width * (Int(format & 3) + 1))  // in components, as libpng wants
        var size: png_alloc_size_t = 0
        guard png_image_write_to_memory(&image, nil, &size, 0, pixels.baseAddress, stride, nil) != 0, size > 0 else {
            throw ImageFileError.encodingFailed(message(of: &image))
        }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = output.withUnsafeMutableBytes { buffer in
            png_image_write_to_memory(&image, buffer.baseAddress, &size, 0, pixels.baseAddress, stride, nil)
        }
        guard written != 0 else { throw ImageFileError.encodingFailed(message(of: &image)) }
        output.removeLast(output.count - Int(size))
        return output
    }

    /// The NUL-terminated message libpng left in the control structure.
    private static func message(of image: inout png_image) -> String {
        let text = withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return text.isEmpty ? "unknown libpng error" : text
    }

    /// Maps a libpng read message to the error kind it stands for.
    private static func readError(_ message: String) -> ImageFileError {
        let lowered = message.lowercased()
        if lowered.contains("beyond end of data") || lowered.contains("not enough image data") {
            return .truncated(format: "PNG", detail: "libpng: \(message)")
        }
        return .corrupt(format: "PNG", detail: "libpng: \(message)")
    }

    /// What the chunk walk learnt from IHDR.
    struct Header: Equatable {
        var width: Int
        var height: Int
        var bitDepth: Int
        var colourType: Int
        var isInterlaced: Bool
    }

    /// Checks the signature and the chunk framing up to IEND, and returns IHDR's fields.
    ///
    /// Throws `.truncated` when the bytes end inside the signature, inside a chunk or before IEND;
    /// `.corrupt` for a wrong signature, a first chunk that is not a 13-byte IHDR, or a chunk
    /// length over 2^31 - 1. CRCs and chunk contents are left to libpng.
    static func walkChunks(_ bytes: [UInt8]) throws -> Header {
        let signature = ImageFileFormat.pngSignature
        if bytes.count < signature.count {
            if Array(signature.prefix(bytes.count)) == bytes {
                throw ImageFileError.truncated(
                    format: "PNG", detail: "the file ends inside the 8-byte signature (\(bytes.count) bytes)")
            }
            throw ImageFileError.corrupt(format: "PNG", detail: "bad signature")
        }
        guard Array(bytes[0..<8]) == signature else {
            throw ImageFileError.corrupt(
                format: "PNG", detail: "bad signature (line endings mangled by a text transfer?)")
        }
        func bigEndian(_ offset: Int) -> Int {
            Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
        }
        func typeName(_ offset: Int) -> String {
            String(
                decoding: bytes[offset..<(offset + 4)].map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") },
                as: UTF8.self)
        }
        var offset = 8
        var header: Header?
        var lastType = "signature"
        while true {
            if offset == bytes.count {
                throw ImageFileError.truncated(
                    format: "PNG",
                    detail: "the file ends after the \(lastType) chunk at byte \(offset), before the IEND chunk")
            }
            guard offset + 8 <= bytes.count else {
                throw ImageFileError.truncated(
                    format: "PNG", detail: "the file ends inside a chunk header at byte \(offset) of \(bytes.count)")
            }
            let length = bigEndian(offset)
            let type = typeName(offset + 4)
            guard length <= 0x7FFF_FFFF else {
                throw ImageFileError.corrupt(
                    format: "PNG", detail: "chunk '\(type)' at byte \(offset) declares length \(length)")
            }
            let end = offset + 12 + length
            if header == nil {
                guard type == "IHDR", length == 13 else {
                    throw ImageFileError.corrupt(
                        format: "PNG", detail: "the first chunk is '\(type)' (\(length) bytes), not a 13-byte IHDR")
                }
                guard end <= bytes.count else {
                    throw ImageFileError.truncated(format: "PNG", detail: "the file ends inside the IHDR chunk")
                }
                header = Header(
                    width: bigEndian(offset + 8), height: bigEndian(offset + 12), bitDepth: Int(bytes[offset + 16]),
                    colourType: Int(bytes[offset + 17]), isInterlaced: bytes[offset + 20] != 0)
            }
            guard end <= bytes.count else {
                throw ImageFileError.truncated(
                    format: "PNG",
                    detail:
                        "the file ends inside the '\(type)' chunk at byte \(offset) (\(bytes.count) of \(end) bytes present)"
                )
            }
            if type == "IEND", let header { return header }
            lastType = "'\(type)'"
            offset = end
        }
    }
}
