// JPEG reading (and writing, for tests and synthetic photos) through libjpeg-turbo's TurboJPEG API,
// which reports errors through its handle (tjGetErrorStr2) instead of longjmp-ing out of the caller,
// so it is safe to call from Swift. The header is read first: the dimensions are checked against the
// 50-megapixel limit before any pixel memory is allocated, and CMYK (print) files are refused with a
// reason. Every JPEG is decoded straight to grey (the luma the network's preprocessing uses anyway,
// and a third of the memory of RGB for a phone photo), then turned upright by its EXIF orientation.
// Progressive files are decoded with a scan limit (TJFLAG_LIMITSCANS), so a hostile file cannot
// make the decoder run for minutes.
import CTurboJPEG
import Foundation

/// JPEG decoding and encoding.
public enum JPEG {
    /// How a test or a synthetic photo is encoded.
    public enum Subsampling: Sendable {
        /// 4:4:4 (no chroma subsampling), 4:2:0 (phone cameras), or a greyscale JPEG.
        case none, quarter, grey
    }

    /// A photo is decoded at the smallest of libjpeg-turbo's DCT scales (1/2, 1/4, 1/8...) that keeps
    /// its shorter side at least this many pixels: a 12-megapixel phone photo of a digit is read at
    /// 1/4 scale, about 16 times less work, with far more pixels than a 20-pixel digit needs (a digit
    /// a tenth of the photo's height is still 50 pixels tall; a row of six across it, 80 wide each).
    public static let decodedShorterSide = 512

    /// Decodes a baseline or progressive JPEG (colour or greyscale) to a grey image, upright; large
    /// photos at a reduced scale (`decodedShorterSide`; pass `fullSize` for every pixel).
    ///
    /// Throws `ImageFileError`: `.empty`, `.truncated` (the data ends early), `.zeroSized`,
    /// `.tooLarge`, `.corrupt` (libjpeg-turbo's reason, or a CMYK file).
    public static func decode(_ bytes: [UInt8], fullSize: Bool = false) throws -> RasterImage {
        if bytes.isEmpty { throw ImageFileError.empty }
        guard let handle = tjInitDecompress() else {
            throw ImageFileError.corrupt(format: "JPEG", detail: "libjpeg-turbo could not start a decompressor")
        }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colourspace: Int32 = 0
        let headerStatus = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(
                handle, $0.baseAddress, UInt(bytes.count), &width, &height, &subsampling, &colourspace)
        }
        guard headerStatus == 0 else { throw failure(handle, bytes: bytes) }
        // Tables with no frame header yet (TurboJPEG's "tables-only" case): a file cut short.
        if (width == 0 || height == 0) && !endsWithEOI(bytes) {
            throw ImageFileError.truncated(format: "JPEG", detail: "the data ends before the frame header")
        }
        try ImageFile.checkDimensions(format: "JPEG", width: Int(width), height: Int(height))
        if colourspace == Int32(TJCS_CMYK.rawValue) || colourspace == Int32(TJCS_YCCK.rawValue) {
            throw ImageFileError.corrupt(
                format: "JPEG",
                detail: "it is a CMYK (print) JPEG, which is not read; save it as an RGB or greyscale JPEG or as PNG")
        }
        let (scaledWidth, scaledHeight) = fullSize ? (width, height) : scaledSize(width: width, height: height)
        var grey = [UInt8](repeating: 0, count: Int(scaledWidth) * Int(scaledHeight))
        let status = bytes.withUnsafeBufferPointer { source in
            grey.withUnsafeMutableBufferPointer { target in
                tjDecompress2(
                    handle, source.baseAddress, UInt(bytes.count), target.baseAddress, scaledWidth, 0, scaledHeight,
                    Int32(TJPF_GRAY.rawValue), Int32(TJFLAG_LIMITSCANS | TJFLAG_ACCURATEDCT))
            }
        }
        // A warning (corrupt data the decoder skipped) still gives an image; a file that ends early
        // does not: its missing rows would be grey, and a digit could be cut off.
        if status != 0 {
            let error = failure(handle, bytes: bytes)
            if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) { throw error }
            if case .truncated = error { throw error }
        }
        let image = RasterImage(width: Int(scaledWidth), height: Int(scaledHeight), layout: .grey, samples: grey)
        return EXIF.orientation(ofJPEG: bytes).map { image.oriented($0) } ?? image
    }

    /// The size of the smallest DCT scale (n/8 for n in 1...8) whose shorter side is at least
    /// `decodedShorterSide`, or the full size when even that is too small.
    static func scaledSize(width: Int32, height: Int32) -> (Int32, Int32) {
        let shorter = Int(min(width, height))
        // TJSCALED: the scaled dimension rounds up.
        func scaled(_ dimension: Int32, _ eighths: Int) -> Int32 { Int32((Int(dimension) * eighths + 7) / 8) }
        for eighths in 1...8 where (shorter * eighths + 7) / 8 >= decodedShorterSide {
            return (scaled(width, eighths), scaled(height, eighths))
        }
        return (width, height)
    }

    /// The last error of `handle` as an `ImageFileError`. A file that does not end with the EOI
    /// marker was cut short (whatever the decoder tripped over first), so it is called truncated.
    private static func failure(_ handle: tjhandle, bytes: [UInt8]) -> ImageFileError {
        let message = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
        if message.lowercased().contains("premature end") || !endsWithEOI(bytes) {
            return .truncated(format: "JPEG", detail: "the data ends before the image does (\(message))")
        }
        return .corrupt(format: "JPEG", detail: message)
    }

    /// Whether the data ends with the end-of-image marker FF D9.
    private static func endsWithEOI(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[bytes.count - 2] == 0xFF && bytes[bytes.count - 1] == 0xD9
    }

    /// Encodes `image` as a JPEG of `quality` 1...100: grey or RGB as they are, an image with alpha as
    /// its grey composited over white (JPEG has no transparency; so a drawing keeps its ink).
    public static func encode(
        _ image: RasterImage, quality: Int = 90, subsampling: Subsampling = .quarter, progressive: Bool = false
    ) throws -> [UInt8] {
        guard let handle = tjInitCompress() else { throw ImageFileError.encodingFailed("no JPEG compressor") }
        defer { tjDestroy(handle) }
        let source: RasterImage
        switch image.layout {
        case .grey, .rgb: source = image
        case .greyAlpha, .rgba:
            source = RasterImage(
                width: image.width, height: image.height, layout: .grey, samples: image.greyCompositedOverWhite())
        }
        let format = source.layout == .grey ? TJPF_GRAY : TJPF_RGB
        let sampling: TJSAMP =
            source.layout == .grey || subsampling == .grey
            ? TJSAMP_GRAY : subsampling == .none ? TJSAMP_444 : TJSAMP_420
        var buffer: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let flags = Int32(TJFLAG_ACCURATEDCT) | (progressive ? Int32(TJFLAG_PROGRESSIVE) : 0)
        let status = source.samples.withUnsafeBufferPointer {
            tjCompress2(
                handle, $0.baseAddress, Int32(source.width), 0, Int32(source.height), Int32(format.rawValue), &buffer,
                &size, Int32(sampling.rawValue), Int32(max(1, min(100, quality))), flags)
        }
        defer { if let buffer { tjFree(buffer) } }
        guard status == 0, let buffer else {
            throw ImageFileError.encodingFailed(tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown")
        }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
    }
}
