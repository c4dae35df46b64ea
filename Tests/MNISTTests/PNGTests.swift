// PNG decoding and encoding through libpng: round trips for every layout, 16-bit, every colour
// type and bit depth libpng reads (built by hand, with and without Adam7 interlacing), and each bad
// input's distinct error.
import XCTest
import TestSupport

@testable import MNIST

final class PNGTests: XCTestCase {
    private func randomSamples(_ count: Int, below limit: Int, seed: UInt64) -> [Int] {
        var generator = TestGenerator(seed: seed)
        return (0..<count).map { _ in Int.random(in: 0..<limit, using: &generator) }
    }

    private func assertError(
        _ bytes: [UInt8], _ expected: (ImageFileError) -> Bool, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try ImageFile.decode(bytes), what, file: file, line: line) { error in
            guard let error = error as? ImageFileError, expected(error) else {
                return XCTFail("\(what): unexpected error \(error)", file: file, line: line)
            }
        }
    }

    func testLibpngIsAtLeast1_6() {
        XCTAssertTrue(PNG.libpngVersion.hasPrefix("1."), PNG.libpngVersion)
        XCTAssertGreaterThanOrEqual(PNG.libpngVersionNumber, 10600, PNG.libpngVersion)
        let parts = PNG.libpngVersion.split(separator: ".").compactMap { Int($0) }
        XCTAssertGreaterThanOrEqual(parts.count, 2)
        XCTAssertTrue(parts[0] > 1 || parts[1] >= 6, PNG.libpngVersion)
    }

    // MARK: - Round trips through libpng's writer

    func testEncodeDecodeRoundTripForEveryLayout() throws {
        for layout in RasterImage.Layout.allCases {
            let (width, height) = (13, 7)
            let samples = randomSamples(width * height * layout.channelCount, below: 256, seed: UInt64(layout.rawValue))
            let image = RasterImage(width: width, height: height, layout: layout, samples: samples.map { UInt8($0) })
            let bytes = try PNG.encode(image)
            XCTAssertEqual(ImageFileFormat.detect(bytes), .png)
            let header = try PNG.walkChunks(bytes)
            XCTAssertEqual(header.bitDepth, 8, "\(layout)")
            XCTAssertEqual(header.colourType, [0, 4, 2, 6][layout.rawValue - 1], "\(layout)")
            let decoded = try ImageFile.decode(bytes)
            XCTAssertEqual(decoded.layout, layout)
            XCTAssertEqual(decoded, image, "\(layout) round trip")
        }
    }

    func testSixteenBitLinearRoundTrip() throws {
        // libpng's simplified writer stores 16-bit samples as linear light; reading back gives
        // their gamma-2.2 encoding (see PNG.decode).
        func srgb(_ linear: Double) -> Double { pow(linear, 1 / 2.2) }
        for layout in [RasterImage.Layout.grey, .rgb] {
            let (width, height) = (9, 5)
            let samples = randomSamples(width * height * layout.channelCount, below: 65536, seed: 99).map { UInt16($0) }
            let bytes = try PNG.encode16(width: width, height: height, layout: layout, samples: samples)
            XCTAssertEqual(try PNG.walkChunks(bytes).bitDepth, 16)
            let decoded = try PNG.decode(bytes)
            XCTAssertEqual(decoded.layout, layout)
            var worst = 0.0
            for (value, byte) in zip(samples, decoded.samples) {
                worst = max(worst, abs(srgb(Double(value) / 65535) * 255 - Double(byte)))
            }
            XCTAssertLessThanOrEqual(worst, 1.0, "\(layout): worst difference from the gamma-2.2 encoding \(worst)")
        }
    }

    // MARK: - Every colour type and bit depth, interlaced or not (hand-built files)

    /// One case: the file's colour type and depth, its samples, and the expected 8-bit decode.
    private struct Case {
        var name: String
        var colourType: HandmadePNG.ColourType
        var bitDepth: Int
        var samples: [Int]
        var palette: [[UInt8]]? = nil
        var transparency: [UInt8]? = nil
        var layout: RasterImage.Layout
        var expected: [UInt8]
        var tolerance: Int = 0
    }

    private func cases(width: Int, height: Int) -> [Case] {
        let n = width * height
        var all = [Case]()
        for depth in [1, 2, 4, 8, 16] {
            let maxValue = (1 << depth) - 1
            let samples = randomSamples(n, below: maxValue + 1, seed: UInt64(depth))
            let expected = samples.map { UInt8((Double($0) * 255 / Double(maxValue)).rounded()) }
            all.append(
                Case(
                    name: "grey \(depth)-bit", colourType: .grey, bitDepth: depth, samples: samples,
                    layout: .grey, expected: expected, tolerance: depth == 16 ? 1 : 0))
        }
        for depth in [8, 16] {
            let maxValue = (1 << depth) - 1
            for (type, layout) in [
                (HandmadePNG.ColourType.rgb, RasterImage.Layout.rgb), (.greyAlpha, .greyAlpha), (.rgba, .rgba),
            ] {
                var samples = randomSamples(
                    n * type.channelCount, below: maxValue + 1, seed: UInt64(depth * 10 + Int(type.rawValue)))
                if layout.hasAlpha {
                    // Opaque alpha, so colour survives exactly; alpha itself varies in the next case.
                    for i in 0..<n { samples[(i + 1) * type.channelCount - 1] = maxValue }
                }
                let expected = samples.map { UInt8((Double($0) * 255 / Double(maxValue)).rounded()) }
                all.append(
                    Case(
                        name: "\(layout) \(depth)-bit opaque", colourType: type, bitDepth: depth, samples: samples,
                        layout: layout, expected: expected, tolerance: depth == 16 ? 1 : 0))
            }
        }
        // 8-bit alpha of every level is passed through untouched with its colour.
        for (type, layout) in [(HandmadePNG.ColourType.greyAlpha, RasterImage.Layout.greyAlpha), (.rgba, .rgba)] {
            let samples = randomSamples(n * type.channelCount, below: 256, seed: 77 + UInt64(type.rawValue))
            all.append(
                Case(
                    name: "\(layout) 8-bit translucent", colourType: type, bitDepth: 8, samples: samples,
                    layout: layout, expected: samples.map { UInt8($0) }))
        }
        for depth in [1, 2, 4, 8] {
            let entries = min(1 << depth, 200)
            let palette: [[UInt8]] = (0..<entries).map { (i: Int) -> [UInt8] in
                let red = UInt8(i * 37 % 256), green = UInt8(i * 91 % 256), blue = UInt8(255 - i)
                return [red, green, blue]
            }
            let indices = randomSamples(n, below: entries, seed: 500 + UInt64(depth))
            all.append(
                Case(
                    name: "palette \(depth)-bit", colourType: .palette, bitDepth: depth, samples: indices,
                    palette: palette, layout: .rgb, expected: indices.flatMap { palette[$0] }))
            // tRNS for the first entries only; the rest stay opaque.
            let alphas = (0..<max(1, entries / 2)).map { UInt8($0 * 255 / max(1, entries / 2)) }
            let expected: [UInt8] = indices.flatMap { (index: Int) -> [UInt8] in
                let alpha: UInt8 = index < alphas.count ? alphas[index] : 255
                return palette[index] + [alpha]
            }
            all.append(
                Case(
                    name: "palette \(depth)-bit with tRNS", colourType: .palette, bitDepth: depth, samples: indices,
                    palette: palette, transparency: alphas, layout: .rgba, expected: expected))
        }
        // Grey with a transparent key colour becomes grey+alpha.
        let greys = randomSamples(n, below: 4, seed: 600).map { $0 * 60 }
        all.append(
            Case(
                name: "grey 8-bit with tRNS key", colourType: .grey, bitDepth: 8, samples: greys,
                transparency: [0, 120], layout: .greyAlpha,
                expected: greys.flatMap { [UInt8($0), $0 == 120 ? 0 : 255] }))
        return all
    }

    func testEveryColourTypeAndBitDepthInterlacedOrNot() throws {
        for (width, height) in [(11, 9), (1, 1), (3, 2), (17, 5)] {
            for item in cases(width: width, height: height) {
                let what = "\(item.name) \(width)x\(height)"
                let plainBytes = HandmadePNG.make(
                    width: width, height: height, bitDepth: item.bitDepth, colourType: item.colourType,
                    samples: item.samples,
                    palette: item.palette, transparency: item.transparency)
                let interlacedBytes = HandmadePNG.make(
                    width: width, height: height, bitDepth: item.bitDepth, colourType: item.colourType,
                    samples: item.samples,
                    interlaced: true, palette: item.palette, transparency: item.transparency)
                XCTAssertTrue(try PNG.walkChunks(interlacedBytes).isInterlaced)
                let plain = try ImageFile.decode(plainBytes)
                let interlaced = try ImageFile.decode(interlacedBytes)
                XCTAssertEqual(plain.layout, item.layout, what)
                XCTAssertEqual(interlaced, plain, "\(what): interlaced differs from plain")
                var worst = 0, worstIndex = 0
                for (index, (got, want)) in zip(plain.samples, item.expected).enumerated()
                where abs(Int(got) - Int(want)) > worst {
                    worst = abs(Int(got) - Int(want))
                    worstIndex = index
                }
                XCTAssertEqual(plain.samples.count, item.expected.count, what)
                XCTAssertLessThanOrEqual(
                    worst, item.tolerance,
                    "\(what): worst difference \(worst) at sample \(worstIndex)")
            }
        }
    }

    func testSixteenBitRGBAWithTranslucencyCompositesLikeEightBit() throws {
        // 16-bit colour under partial alpha goes through libpng's premultiplied path; what matters
        // for preprocessing is the composite over white, which must match the 8-bit file's.
        let (width, height) = (7, 6)
        let samples8 = randomSamples(width * height * 4, below: 256, seed: 4242)
        let image8 = try ImageFile.decode(
            HandmadePNG.make(
                width: width, height: height, bitDepth: 8, colourType: .rgba,
                samples: samples8))
        let image16 = try ImageFile.decode(
            HandmadePNG.make(
                width: width, height: height, bitDepth: 16, colourType: .rgba,
                samples: samples8.map { $0 * 257 }))
        let grey8 = image8.greyCompositedOverWhite(), grey16 = image16.greyCompositedOverWhite()
        let worst = zip(grey8, grey16).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 2, "worst composite difference \(worst)")
    }

    // MARK: - Bad input

    func testEmptyFile() {
        assertError([], { $0 == .empty }, "empty")
        XCTAssertThrowsError(try PNG.decode([])) { XCTAssertEqual($0 as? ImageFileError, .empty) }
        XCTAssertTrue(ImageFileError.empty.description.contains("empty"))
    }

    func testOtherFormatsAreNamed() {
        let samples: [(String, [UInt8], String?)] = [
            ("GIF", Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0], "a GIF image"),
            ("BMP", Array("BM".utf8) + [UInt8](repeating: 0, count: 20), "a BMP image"),
            ("WebP", Array("RIFF".utf8) + [0, 0, 0, 0] + Array("WEBPVP8 ".utf8), "a WebP image"),
            (
                "IDX", [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28],
                "an IDX file (the MNIST data set format), not an image"
            ),
            ("text", Array("hello, world\n".utf8), nil),
        ]
        for (name, bytes, kind) in samples {
            assertError(bytes, { $0 == .unsupportedFormat(kind: kind) }, name)
        }
        let message = ImageFileError.unsupportedFormat(kind: "a GIF image").description
        XCTAssertTrue(message.contains("GIF") && message.contains("PNG, JPEG"), message)
    }

    func testTruncatedPNGs() throws {
        var generator = TestGenerator(seed: 8)
        let image = RasterImage(
            width: 40, height: 30, layout: .rgb,
            samples: (0..<3600).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let bytes = try PNG.encode(image)
        for length in [1, 4, 8, 12, 20, 33, 40, bytes.count / 2, bytes.count - 13, bytes.count - 1] {
            assertError(
                Array(bytes.prefix(length)),
                {
                    if case .truncated(format: "PNG", _) = $0 { return true }
                    return false
                }, "cut to \(length) of \(bytes.count) bytes")
        }
        // Complete chunk framing, but the image data stops after 4 of 9 rows.
        let rows = [UInt8]((0..<4).flatMap { _ in [0] + [UInt8](repeating: 100, count: 11) })
        let shortData =
            HandmadePNG.signature
            + HandmadePNG.chunk("IHDR", HandmadePNG.bigEndian(11) + HandmadePNG.bigEndian(9) + [8, 0, 0, 0, 0])
            + HandmadePNG.chunk("IDAT", HandmadePNG.zlibStored(rows)) + HandmadePNG.chunk("IEND", [])
        assertError(
            shortData,
            {
                if case .truncated(format: "PNG", let detail) = $0 { return detail.contains("Not enough image data") }
                return false
            }, "image data for 4 of 9 rows")
        // The full file still decodes.
        XCTAssertEqual(try ImageFile.decode(bytes), image)
    }

    func testZeroSizedPNG() {
        for (width, height) in [(0, 10), (10, 0), (0, 0)] as [(UInt32, UInt32)] {
            assertError(
                HandmadePNG.headerOnly(width: width, height: height),
                { $0 == .zeroSized(format: "PNG", width: Int(width), height: Int(height)) }, "\(width)x\(height)")
        }
    }

    func testAbsurdlyLargePNGIsRejectedBeforeAllocating() {
        // Headers only: 100 MP, 60 MP, and dimensions whose product overflows 32 bits.
        for (width, height) in [(10_000, 10_000), (100_000, 600), (0x7FFF_FFFF, 0x7FFF_FFFF)] as [(UInt32, UInt32)] {
            assertError(
                HandmadePNG.headerOnly(width: width, height: height),
                { $0 == .tooLarge(format: "PNG", width: Int(width), height: Int(height)) }, "\(width)x\(height)")
        }
        XCTAssertTrue(
            ImageFileError.tooLarge(format: "PNG", width: 10_000, height: 10_000).description.contains(
                "100.0 megapixels"))
        // Just under the limit is not rejected for its size (it fails later for lack of data).
        assertError(
            HandmadePNG.headerOnly(width: 10_000, height: 5_000),
            {
                if case .tooLarge = $0 { return false }
                return true
            }, "50 MP exactly")
    }

    func testCorruptPNGs() throws {
        let samples = randomSamples(20 * 10, below: 256, seed: 12)
        let good = HandmadePNG.make(width: 20, height: 10, bitDepth: 8, colourType: .grey, samples: samples)
        func isCorrupt(_ error: ImageFileError) -> Bool {
            if case .corrupt(format: "PNG", _) = error { return true }
            return false
        }
        // A flipped byte inside IDAT: the CRC no longer matches.
        var badCRC = good
        let idat = try XCTUnwrap(findChunk("IDAT", in: good))
        badCRC[idat + 10] ^= 0xFF
        assertError(badCRC, isCorrupt, "IDAT CRC mismatch")
        // A broken zlib header with a correct CRC.
        var badZlib =
            HandmadePNG.signature
            + HandmadePNG.chunk("IHDR", HandmadePNG.bigEndian(20) + HandmadePNG.bigEndian(10) + [8, 0, 0, 0, 0])
        badZlib += HandmadePNG.chunk("IDAT", [0x78, 0x02, 0x55, 0x55, 0x55]) + HandmadePNG.chunk("IEND", [])
        assertError(badZlib, isCorrupt, "bad zlib stream")
        // An impossible bit depth.
        let badDepth =
            HandmadePNG.signature
            + HandmadePNG.chunk("IHDR", HandmadePNG.bigEndian(4) + HandmadePNG.bigEndian(4) + [3, 0, 0, 0, 0])
            + HandmadePNG.chunk("IEND", [])
        assertError(badDepth, isCorrupt, "bit depth 3")
        // A first chunk that is not IHDR, and a mangled signature (CR LF turned into LF).
        assertError(HandmadePNG.signature + HandmadePNG.chunk("IEND", []), isCorrupt, "no IHDR")
        assertError(
            [0x89, 0x50, 0x4E, 0x47, 0x0A, 0x1A, 0x0A] + Array(good.dropFirst(8)), isCorrupt, "mangled signature")
        XCTAssertEqual(try ImageFile.decode(good).samples, samples.map { UInt8($0) })
    }

    /// The offset of the first chunk of `type` (its length field), or nil.
    private func findChunk(_ type: String, in bytes: [UInt8]) -> Int? {
        var offset = 8
        while offset + 8 <= bytes.count {
            let length =
                Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            if String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self) == type { return offset }
            offset += 12 + length
        }
        return nil
    }
}
