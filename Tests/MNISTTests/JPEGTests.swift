// JPEG through libjpeg-turbo: colour, greyscale and progressive files decode to their luma; EXIF
// orientations 1-8 (both byte orders) turn the photo upright, checked against transforms composed
// from flips and a transpose as the EXIF specification describes them; CMYK is refused; truncated,
// corrupt and oversized files get one-line errors before any pixel memory is allocated.
import CTurboJPEG
import MNIST
import TestSupport
import XCTest

final class JPEGTests: XCTestCase {
    /// A smooth colour picture with an asymmetric shape (so every turn and flip shows).
    static func picture(width: Int = 48, height: Int = 32) -> RasterImage {
        var samples = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let at = (y * width + x) * 3
                let shape = (x < 12 && y < 24) || (y > 20 && x < 40)  // an L
                samples[at] = UInt8(clamping: shape ? 230 : 20 + 3 * x)
                samples[at + 1] = UInt8(clamping: shape ? 220 : 30 + 4 * y)
                samples[at + 2] = UInt8(shape ? 40 : 120)
            }
        }
        return RasterImage(width: width, height: height, layout: .rgb, samples: samples)
    }

    private static func meanAndLargestDifference(_ a: RasterImage, _ b: RasterImage) -> (Double, Int) {
        XCTAssertEqual(a.width, b.width)
        XCTAssertEqual(a.height, b.height)
        let differences = zip(a.samples, b.samples).map { abs(Int($0) - Int($1)) }
        return (Double(differences.reduce(0, +)) / Double(max(1, differences.count)), differences.max() ?? 0)
    }

    func testColourAndGreyscaleJPEGsDecodeToTheirLuma() throws {
        let picture = Self.picture()
        let luma = picture.converted(to: .grey)
        for (name, bytes) in [
            ("4:4:4", try JPEG.encode(picture, quality: 95, subsampling: .none)),
            ("4:2:0", try JPEG.encode(picture, quality: 95, subsampling: .quarter)),
            ("greyscale from colour", try JPEG.encode(picture, quality: 95, subsampling: .grey)),
            ("greyscale", try JPEG.encode(luma, quality: 95)),
        ] {
            XCTAssertEqual(ImageFileFormat.detect(bytes), .jpeg, name)
            let decoded = try ImageFile.decode(bytes)
            XCTAssertEqual(decoded.layout, .grey, name)
            let (mean, largest) = Self.meanAndLargestDifference(decoded, luma)
            XCTAssertLessThan(mean, 2.5, name)
            XCTAssertLessThan(largest, 40, name)
        }
    }

    func testAProgressiveFileDecodesToTheSamePixelsAsItsBaselineTwin() throws {
        // Progressive coding reorders the same quantised coefficients: the pixels must be identical.
        let picture = Self.picture(width: 64, height: 48)
        let baseline = try ImageFile.decode(JPEG.encode(picture, quality: 80))
        let progressiveBytes = try JPEG.encode(picture, quality: 80, progressive: true)
        XCTAssertTrue(
            zip(progressiveBytes, progressiveBytes.dropFirst()).contains { $0 == 0xFF && $1 == 0xC2 },
            "an SOF2 (progressive) marker")
        XCTAssertEqual(try ImageFile.decode(progressiveBytes), baseline)
    }

    func testALargePhotoIsDecodedAtTheSmallestScaleThatKeepsItsShorterSideAt512Pixels() throws {
        // 1600x1200: 4/8 gives 800x600; 3/8 would give 450 rows, fewer than 512.
        let width = 1600, height = 1200
        var samples = [UInt8](repeating: 210, count: width * height)
        for y in 300..<900 { for x in 700..<780 { samples[y * width + x] = 25 } }
        let bytes = try JPEG.encode(
            RasterImage(width: width, height: height, layout: .grey, samples: samples), quality: 90)
        let reduced = try ImageFile.decode(bytes)
        XCTAssertEqual([reduced.width, reduced.height], [800, 600])
        let full = try JPEG.decode(bytes, fullSize: true)
        XCTAssertEqual([full.width, full.height], [1600, 1200])
        // The reduced image is the full one averaged over 2x2 blocks, within JPEG's rounding.
        var largest = 0
        for y in 0..<600 {
            for x in 0..<800 {
                let sum = [(0, 0), (1, 0), (0, 1), (1, 1)].reduce(0) {
                    $0 + Int(full.samples[(2 * y + $1.1) * 1600 + 2 * x + $1.0])
                }
                largest = max(largest, abs(Int(reduced.samples[y * 800 + x]) - (sum + 2) / 4))
            }
        }
        XCTAssertLessThanOrEqual(largest, 12)
        // A small picture is decoded whole.
        XCTAssertEqual(try ImageFile.decode(JPEG.encode(Self.picture(), quality: 90)).width, 48)
    }

    // MARK: - EXIF orientation

    // The transforms of the EXIF specification (and of PIL's ImageOps.exif_transpose), built from
    // three primitives written here independently of RasterImage.oriented.
    static func flipLeftRight(_ i: RasterImage) -> RasterImage {
        map(i, i.width, i.height) { x, y in (i.width - 1 - x, y) }
    }
    static func flipTopBottom(_ i: RasterImage) -> RasterImage {
        map(i, i.width, i.height) { x, y in (x, i.height - 1 - y) }
    }
    static func transpose(_ i: RasterImage) -> RasterImage { map(i, i.height, i.width) { x, y in (y, x) } }
    static func map(_ image: RasterImage, _ width: Int, _ height: Int, _ source: (Int, Int) -> (Int, Int))
        -> RasterImage
    {
        var samples = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let (sx, sy) = source(x, y)
                samples[y * width + x] = image.samples[sy * image.width + sx]
            }
        }
        return RasterImage(width: width, height: height, layout: .grey, samples: samples)
    }
    static func upright(_ stored: RasterImage, orientation: Int) -> RasterImage {
        switch orientation {
        case 2: return flipLeftRight(stored)
        case 3: return flipTopBottom(flipLeftRight(stored))  // 180°
        case 4: return flipTopBottom(stored)
        case 5: return transpose(stored)
        case 6: return flipLeftRight(transpose(stored))  // 90° clockwise
        case 7: return flipTopBottom(flipLeftRight(transpose(stored)))  // transverse
        case 8: return flipTopBottom(transpose(stored))  // 90° anticlockwise
        default: return stored
        }
    }

    func testEveryEXIFOrientationTurnsThePhotoUpright() throws {
        let jpeg = try JPEG.encode(Self.picture(), quality: 90)
        let stored = try ImageFile.decode(jpeg)
        XCTAssertNil(EXIF.orientation(ofJPEG: jpeg), "no EXIF: no orientation")
        for bigEndian in [false, true] {
            for orientation in 1...8 {
                let tagged = JPEGFiles.inserting(
                    JPEGFiles.exifSegment(orientation: orientation, bigEndian: bigEndian), into: jpeg)
                XCTAssertEqual(EXIF.orientation(ofJPEG: tagged), orientation)
                let decoded = try ImageFile.decode(tagged)
                XCTAssertEqual(decoded, Self.upright(stored, orientation: orientation), "orientation \(orientation)")
                if orientation >= 5 { XCTAssertEqual(decoded.width, stored.height) }
            }
        }
    }

    func testMalformedEXIFIsIgnoredNotTrusted() throws {
        let jpeg = try JPEG.encode(Self.picture(), quality: 90)
        let good = JPEGFiles.exifSegment(orientation: 6, bigEndian: false)
        var outOfRange = good
        outOfRange[4 + 6 + 8 + 2 + 12 + 8] = 9  // Orientation 9 does not exist
        var badOffset = good
        badOffset[4 + 6 + 4] = 0xF0  // IFD0 offset far past the segment
        let cut = Array(good.prefix(20))  // a length that claims more than the file holds is checked too
        for (name, segment) in [("orientation 9", outOfRange), ("IFD offset", badOffset)] {
            let tagged = JPEGFiles.inserting(segment, into: jpeg)
            XCTAssertNil(EXIF.orientation(ofJPEG: tagged), name)
            XCTAssertEqual(try ImageFile.decode(tagged), try ImageFile.decode(jpeg), name)
        }
        XCTAssertNil(EXIF.orientation(ofJPEG: [0xFF, 0xD8] + cut))
    }

    // MARK: - Refusals

    func testACMYKJPEGIsRefusedWithAReason() throws {
        guard let handle = tjInitCompress() else { return XCTFail("no compressor") }
        defer { tjDestroy(handle) }
        let cmyk = [UInt8](repeating: 100, count: 16 * 16 * 4)
        var buffer: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let status = cmyk.withUnsafeBufferPointer {
            tjCompress2(
                handle, $0.baseAddress, 16, 0, 16, Int32(TJPF_CMYK.rawValue), &buffer, &size,
                Int32(TJSAMP_444.rawValue), 90, 0)
        }
        XCTAssertEqual(status, 0)
        let bytes = Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
        tjFree(buffer)
        XCTAssertThrowsError(try ImageFile.decode(bytes)) { error in
            XCTAssertTrue("\(error)".contains("CMYK"), "\(error)")
            XCTAssertTrue("\(error)".hasPrefix("the JPEG file is corrupt: it is a CMYK"), "\(error)")
        }
    }

    func testTruncatedCorruptAndOversizedFilesGetOneLineErrors() throws {
        let jpeg = try JPEG.encode(Self.picture(width: 64, height: 64), quality: 90)
        // Cut anywhere: an error that names JPEG, never a crash and never an image with missing rows.
        for length in stride(from: 1, to: jpeg.count - 2, by: max(1, jpeg.count / 40)) {
            XCTAssertThrowsError(try ImageFile.decode(Array(jpeg.prefix(length))), "\(length) bytes") { error in
                let text = "\(error)"
                XCTAssertFalse(text.contains("\n"), text)
                switch error as? ImageFileError {
                case .truncated(let format, _), .corrupt(let format, _): XCTAssertEqual(format, "JPEG", text)
                default: XCTFail("\(length) bytes: \(text)")
                }
            }
        }
        XCTAssertThrowsError(try ImageFile.decode(Array(jpeg.prefix(jpeg.count / 2)))) { error in
            guard case .truncated = error as? ImageFileError else { return XCTFail("\(error)") }
        }
        // The frame header (SOF0) says 50,000 x 50,000: refused from the header alone.
        var huge = jpeg
        let sof = try XCTUnwrap(zip(huge.indices, huge.dropFirst()).first { huge[$0.0] == 0xFF && $0.1 == 0xC0 }?.0)
        huge[sof + 5] = 0xC3
        huge[sof + 6] = 0x50
        huge[sof + 7] = 0xC3
        huge[sof + 8] = 0x50
        XCTAssertThrowsError(try ImageFile.decode(huge)) { error in
            XCTAssertEqual(error as? ImageFileError, .tooLarge(format: "JPEG", width: 50_000, height: 50_000))
        }
        // A frame header with 0 components is corrupt.
        var corrupt = jpeg
        corrupt[sof + 9] = 0
        XCTAssertThrowsError(try ImageFile.decode(corrupt)) { error in
            guard case .corrupt("JPEG", _) = error as? ImageFileError else { return XCTFail("\(error)") }
        }
    }
}
