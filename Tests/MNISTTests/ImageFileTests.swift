// PGM/PPM reading and writing (comments, maxval up to 65535, each bad header's error), format
// sniffing, and the raster type's layout conversions.
import XCTest
import TestSupport

@testable import MNIST

final class ImageFileTests: XCTestCase {
    private func assertError(
        _ text: String, raster: [UInt8] = [], _ expected: (ImageFileError) -> Bool,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try ImageFile.decode(Array(text.utf8) + raster), text, file: file, line: line) { error in
            guard let error = error as? ImageFileError, expected(error) else {
                return XCTFail("\(text.debugDescription): unexpected error \(error)", file: file, line: line)
            }
        }
    }

    func testPGMWithCommentsEverywhere() throws {
        let header = "P5\n# written by hand\n3 # the width\n# now the height\n2\n#maxval:\n255\n"
        let image = try ImageFile.decode(Array(header.utf8) + [0, 10, 20, 200, 250, 255])
        XCTAssertEqual(image, RasterImage(width: 3, height: 2, layout: .grey, samples: [0, 10, 20, 200, 250, 255]))
        // Comments right after the magic number and CR LF line ends.
        let windows = try ImageFile.decode(Array("P5#comment\r\n2 1\r\n255\n".utf8) + [7, 8])
        XCTAssertEqual(windows.samples, [7, 8])
    }

    func testPPM() throws {
        let image = try ImageFile.decode(Array("P6 2 1 255 ".utf8) + [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(image, RasterImage(width: 2, height: 1, layout: .rgb, samples: [1, 2, 3, 4, 5, 6]))
    }

    func testSixteenBitAndOddMaxvals() throws {
        let wide = PNM.encode(
            width: 4, height: 1, layout: .grey, samples: [0, 257, 32896, 65535], maxValue: 65535, comment: "16-bit")
        XCTAssertEqual(try ImageFile.decode(wide).samples, [0, 1, 128, 255])
        let thousand = PNM.encode(
            width: 2, height: 2, layout: .rgb, samples: [0, 1000, 500, 2, 998, 250, 1, 3, 999, 600, 700, 800],
            maxValue: 1000)
        XCTAssertEqual(
            try ImageFile.decode(thousand).samples,
            [0, 1000, 500, 2, 998, 250, 1, 3, 999, 600, 700, 800].map { UInt8((Double($0) * 255 / 1000).rounded()) })
        let fifteen = PNM.encode(width: 3, height: 1, layout: .grey, samples: [0, 7, 15], maxValue: 15)
        XCTAssertEqual(try ImageFile.decode(fifteen).samples, [0, 119, 255])
        XCTAssertEqual(try ImageFile.decode(Array("P5 1 1 1\n".utf8) + [1]).samples, [255])
    }

    func testPNMRoundTrip() throws {
        var generator = TestGenerator(seed: 21)
        for layout in RasterImage.Layout.allCases {
            let samples = (0..<(5 * 4 * layout.channelCount)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let image = RasterImage(width: 5, height: 4, layout: layout, samples: samples)
            let decoded = try ImageFile.decode(PNM.encode(image))
            // Alpha is composited over white on the way out.
            let expected: RasterImage
            switch layout {
            case .grey, .rgb: expected = image
            case .greyAlpha:
                expected = RasterImage(width: 5, height: 4, layout: .grey, samples: image.greyCompositedOverWhite())
            case .rgba: expected = decoded  // checked through the composite below
            }
            XCTAssertEqual(decoded, expected, "\(layout)")
            XCTAssertEqual(decoded.greyCompositedOverWhite().count, 20)
            if layout == .rgba {
                let worst =
                    zip(decoded.greyCompositedOverWhite(), image.greyCompositedOverWhite())
                    .map { abs(Int($0) - Int($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 1, "RGBA composite")
            }
        }
    }

    func testBadPNMHeaders() {
        func truncated(_ error: ImageFileError) -> Bool {
            if case .truncated = error { return true } else { return false }
        }
        func corrupt(_ error: ImageFileError) -> Bool { if case .corrupt = error { return true } else { return false } }
        assertError("P5\n3 2\n", truncated)
        assertError("P5\n3 2\n255", truncated)
        assertError("P5\n3 2\n255\n", raster: [1, 2, 3, 4, 5], truncated)
        assertError("P6\n2 2\n65535\n", raster: [UInt8](repeating: 0, count: 23), truncated)
        assertError("P5 0 5 255\n", { $0 == .zeroSized(format: "PGM", width: 0, height: 5) })
        assertError("P6 10 0 255\n", { $0 == .zeroSized(format: "PPM", width: 10, height: 0) })
        assertError(
            "P5 10000 10000 255\n", raster: [1, 2, 3], { $0 == .tooLarge(format: "PGM", width: 10_000, height: 10_000) }
        )
        assertError(
            "P5 99999999999999999999 99999 255\n", { if case .tooLarge = $0 { return true } else { return false } })
        assertError("P5 2 2 0\n", raster: [0, 0, 0, 0], corrupt)
        assertError("P5 2 2 70000\n", raster: [UInt8](repeating: 0, count: 8), corrupt)
        assertError("P5 2 1 100\n", raster: [50, 101], corrupt)
        assertError("P5\nabc 2 255\n", corrupt)
        assertError("P5 2 2 255x", raster: [0, 0, 0, 0], corrupt)
        assertError(
            "P2\n2 2\n255\n0 0 0 0\n",
            { $0 == .unsupportedFormat(kind: "a plain-text PGM (P2; only binary P5 is supported)") })
        let description = ImageFileError.truncated(format: "PGM", detail: "x").description
        XCTAssertTrue(description.contains("PGM") && description.contains("truncated"), description)
    }

    func testLayoutConversions() {
        let rgba = RasterImage(width: 2, height: 1, layout: .rgba, samples: [255, 0, 0, 255, 0, 0, 0, 0])
        XCTAssertEqual(rgba.converted(to: .grey).samples, [76, 0])
        XCTAssertEqual(rgba.converted(to: .greyAlpha).samples, [76, 255, 0, 0])
        XCTAssertEqual(rgba.greyCompositedOverWhite(), [76, 255], "transparent black is white over white")
        let grey = RasterImage(width: 1, height: 1, layout: .grey, samples: [9])
        XCTAssertEqual(grey.converted(to: .rgba).samples, [9, 9, 9, 255])
        let half = RasterImage(width: 1, height: 1, layout: .greyAlpha, samples: [0, 128])
        XCTAssertEqual(half.greyCompositedOverWhite(), [127])
        // The division-free compositing is exact for every value and alpha.
        for alpha in 0...255 {
            for value in 0...255 {
                let exact = ((Double(alpha * value + (255 - alpha) * 255)) / 255).rounded()
                XCTAssertEqual(
                    Double(RasterImage.overWhite(UInt8(value), alpha: UInt8(alpha))), exact, "v \(value) a \(alpha)")
            }
        }
    }

    /// Untrusted bytes: every mangled file must either decode or throw an `ImageFileError` (never
    /// trap), and whatever decodes must preprocess or throw. (Fuzz/run.sh goes further, with libFuzzer.)
    func testMangledFilesNeverCrash() throws {
        var generator = TestGenerator(seed: 2024)
        let ink = DigitSketch.one.coverage(width: 24, height: 20, box: (6, 2, 10, 16), strokeWidth: 3)
        let image = RasterImage.drawing(ink, width: 24, height: 20, style: .darkOnTransparent)
        let originals: [[UInt8]] = [
            try PNG.encode(image),
            try PNG.encode(image.converted(to: .grey)),
            HandmadePNG.make(
                width: 9, height: 7, bitDepth: 4, colourType: .palette, samples: (0..<63).map { $0 % 16 },
                interlaced: true,
                palette: (0..<16).map { [UInt8($0 * 16), 0, 0] }, transparency: [0, 128]),
            PNM.encode(image),
            PNM.encode(width: 3, height: 2, layout: .rgb, samples: (0..<18).map { UInt16($0 * 3000) }, maxValue: 65535),
        ]
        var decodedCount = 0, errorCount = 0
        for original in originals {
            for _ in 0..<150 {
                var bytes = original
                switch Int.random(in: 0..<3, using: &generator) {
                case 0:  // flip a few bytes
                    for _ in 0..<Int.random(in: 1...4, using: &generator) {
                        bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(
                            in: 1...255, using: &generator)
                    }
                case 1:  // cut short
                    bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
                default:  // overwrite a run with random bytes
                    let start = Int.random(in: 0..<bytes.count, using: &generator)
                    for i in start..<min(bytes.count, start + 16) {
                        bytes[i] = UInt8.random(in: 0...255, using: &generator)
                    }
                }
                do {
                    let decoded = try ImageFile.decode(bytes)
                    decodedCount += 1
                    _ = try? MNISTPreprocessor().preprocess(decoded)
                } catch is ImageFileError {
                    errorCount += 1
                }
            }
        }
        print("mangled files: \(decodedCount) decoded, \(errorCount) rejected")
        XCTAssertGreaterThan(errorCount, 0)
    }
}
