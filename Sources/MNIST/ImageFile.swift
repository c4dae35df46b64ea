// The one error type of image reading and writing, and the sniffing of a file's kind from its magic
// bytes (never from its extension). Decoders themselves live in PNG.swift, JPEG.swift and PNM.swift.
import Foundation

/// Why an image file could not be read (or an image could not be written).
public enum ImageFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file holds no bytes at all.
    case empty
    /// The file is not PNG, JPEG, PGM or PPM. `kind` names what it seems to be ("a GIF image"), or is
    /// nil when the magic bytes are not recognised.
    case unsupportedFormat(kind: String?)
    /// The file ends before the image does. `format` is "PNG", "JPEG", "PGM" or "PPM"; `detail` says where.
    case truncated(format: String, detail: String)
    /// The header declares a width or height of zero.
    case zeroSized(format: String, width: Int, height: Int)
    /// The header declares more than `ImageFile.maximumPixelCount` pixels; nothing was allocated.
    case tooLarge(format: String, width: Int, height: Int)
    /// The bytes are of the right kind but malformed; `detail` is the decoder's (or libpng's) reason.
    case corrupt(format: String, detail: String)
    /// The encoder (libpng, libjpeg-turbo) refused to encode the image.
    case encodingFailed(String)

    public var description: String {
        switch self {
        case .empty:
            return "the file is empty (0 bytes)"
        case .unsupportedFormat(let kind):
            let what = kind.map { "the file looks like \($0)" } ?? "the file's first bytes match no known image format"
            return
                "\(what); only PNG, JPEG, binary PGM (P5) and binary PPM (P6) images can be read — convert it to PNG first"
        case .truncated(let format, let detail):
            return "the \(format) file is truncated: \(detail)"
        case .zeroSized(let format, let width, let height):
            return "the \(format) header declares a \(width)x\(height) image, which has no pixels"
        case .tooLarge(let format, let width, let height):
            let megapixels = Double(width) * Double(height) / 1e6
            return "the \(format) header declares a \(width)x\(height) image (\(String(format: "%.1f", megapixels)) "
                + "megapixels), over the limit of \(ImageFile.maximumPixelCount / 1_000_000) megapixels; scale it down first"
        case .corrupt(let format, let detail):
            return "the \(format) file is corrupt: \(detail)"
        case .encodingFailed(let why):
            return "the image could not be encoded: \(why)"
        }
    }
}

/// The file kinds recognised from magic bytes.
public enum ImageFileFormat: Equatable, Sendable {
    /// PNG (decoded by libpng).
    case png
    /// JPEG/JFIF/EXIF (decoded by libjpeg-turbo).
    case jpeg
    /// Binary PGM, "P5" (greyscale netpbm).
    case pgm
    /// Binary PPM, "P6" (colour netpbm).
    case ppm
    /// Something else; the string names it when recognised ("a JPEG image").
    case other(String?)

    /// The 8-byte PNG signature.
    public static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Recognises the kind of file from its first bytes. An empty input is `.other(nil)`; a strict
    /// prefix of the PNG signature counts as PNG (so that it is reported as a truncated PNG), and
    /// so does "\u{89}PNG" followed by a damaged signature (reported as corrupt).
    public static func detect<Bytes: Collection>(_ bytes: Bytes) -> ImageFileFormat where Bytes.Element == UInt8 {
        let head = Array(bytes.prefix(16))
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            head.count >= offset + magic.count && Array(head[offset..<(offset + magic.count)]) == magic
        }
        func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

        if head.isEmpty { return .other(nil) }
        if head.count < 8 && Array(pngSignature.prefix(head.count)) == head { return .png }
        // "\u{89}PNG" with a damaged rest of the signature is still PNG, reported as corrupt.
        if starts(Array(pngSignature.prefix(4))) { return .png }
        if starts(ascii("P5")) { return .pgm }
        if starts(ascii("P6")) { return .ppm }
        if starts([0xFF, 0xD8, 0xFF]) || (head.count < 3 && Array([0xFF, 0xD8].prefix(head.count)) == head) {
            return .jpeg
        }
        if starts(ascii("GIF87a")) || starts(ascii("GIF89a")) { return .other("a GIF image") }
        if starts(ascii("BM")) { return .other("a BMP image") }
        if starts(ascii("II*\0")) || starts(ascii("MM\0*")) { return .other("a TIFF image") }
        if starts(ascii("RIFF")) && starts(ascii("WEBP"), at: 8) { return .other("a WebP image") }
        if starts(ascii("ftyp"), at: 4) {
            if starts(ascii("avif"), at: 8) { return .other("an AVIF image") }
            if starts(ascii("heic"), at: 8) || starts(ascii("heix"), at: 8) || starts(ascii("mif1"), at: 8) {
                return .other("a HEIF/HEIC image")
            }
            return .other("an ISO media file (MP4/HEIF family)")
        }
        if starts([0x00, 0x00, 0x01, 0x00]) { return .other("a Windows icon (ICO)") }
        if starts(ascii("qoif")) { return .other("a QOI image") }
        if starts(ascii("%PDF")) { return .other("a PDF document") }
        if starts([0x1F, 0x8B]) { return .other("a gzip-compressed file") }
        if starts(ascii("PK\u{3}\u{4}")) { return .other("a ZIP archive") }
        if starts([0x00, 0x00, 0x08]) && head.count >= 4 && (1...4).contains(head[3]) {
            return .other("an IDX file (the MNIST data set format), not an image")
        }
        if starts(ascii("P1")) || starts(ascii("P4")) {
            return .other("a PBM bitmap (only P5 PGM and P6 PPM are supported)")
        }
        if starts(ascii("P2")) { return .other("a plain-text PGM (P2; only binary P5 is supported)") }
        if starts(ascii("P3")) { return .other("a plain-text PPM (P3; only binary P6 is supported)") }
        if starts(ascii("P7")) { return .other("a PAM image (P7; only P5 PGM and P6 PPM are supported)") }
        if starts(ascii("<svg")) || starts(ascii("<?xml")) { return .other("an SVG/XML document") }
        return .other(nil)
    }
}

/// Reading any supported image file: sniff the format, then decode.
public enum ImageFile {
    /// The largest image accepted, in pixels (50 megapixels). Checked against the header's declared
    /// dimensions before any pixel memory is allocated.
    public static let maximumPixelCount = 50_000_000

    /// Decodes a PNG, JPEG, binary PGM or binary PPM file's bytes, whatever its name says (a JPEG
    /// becomes grey, upright by its EXIF orientation).
    ///
    /// Throws `ImageFileError`: `.empty`, `.unsupportedFormat`, `.truncated`, `.zeroSized`,
    /// `.tooLarge` or `.corrupt`.
    public static func decode(_ bytes: [UInt8]) throws -> RasterImage {
        if bytes.isEmpty { throw ImageFileError.empty }
        switch ImageFileFormat.detect(bytes) {
        case .png: return try PNG.decode(bytes)
        case .jpeg: return try JPEG.decode(bytes)
        case .pgm, .ppm: return try PNM.decode(bytes)
        case .other(let kind): throw ImageFileError.unsupportedFormat(kind: kind)
        }
    }

    /// Reads and decodes the file at `url`. File-system errors are rethrown as Foundation reports
    /// them; the caller adds the path to either kind of error.
    public static func decode(contentsOf url: URL) throws -> RasterImage {
        try decode(Data(contentsOf: url))
    }

    /// Decodes a file's contents given as `Data`.
    public static func decode(_ data: Data) throws -> RasterImage {
        try decode([UInt8](data))
    }

    /// Checks declared dimensions against the zero and 50-megapixel limits.
    static func checkDimensions(format: String, width: Int, height: Int) throws {
        if width == 0 || height == 0 { throw ImageFileError.zeroSized(format: format, width: width, height: height) }
        // Multiply in Double too: a hostile header may declare dimensions whose product overflows.
        if Double(width) * Double(height) > Double(maximumPixelCount) {
            throw ImageFileError.tooLarge(format: format, width: width, height: height)
        }
    }
}
