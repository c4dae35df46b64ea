// End to end, the way `mnist predict` will run: a user's file bytes -> RasterImage -> 28x28 input
// -> text picture, for PNG files of each colour type and for PGM; and a timing of decode plus
// preprocessing of 1000x1000 images. The timing prints figures and asserts no time limit (the
// MNIST module is compiled -Ounchecked in every configuration, so debug test runs measure
// optimised code).
import XCTest
@testable import MNIST

final class PreprocessPipelineTests: XCTestCase {
    private func seven(width: Int, height: Int) -> [Float] {
        DigitSketch.seven.coverage(
            width: width, height: height,
            box: (Double(width) * 0.3, Double(height) * 0.2, Double(width) * 0.25, Double(height) * 0.45),
            strokeWidth: Double(width) / 40)
    }

    func testUsersFilesOfEveryKindGiveTheSameInput() throws {
        let (width, height) = (320, 240)
        let ink = seven(width: width, height: height)
        let onWhite = RasterImage.drawing(ink, width: width, height: height, style: .darkOnWhite)
        let reference = try MNISTPreprocessor().preprocess(onWhite)
        let files: [(String, [UInt8])] = [
            ("grey PNG", try PNG.encode(onWhite)),
            ("RGB PNG", try PNG.encode(onWhite.converted(to: .rgb))),
            ("grey+alpha PNG", try PNG.encode(onWhite.converted(to: .greyAlpha))),
            (
                "transparent RGBA PNG",
                try PNG.encode(RasterImage.drawing(ink, width: width, height: height, style: .darkOnTransparent))
            ),
            (
                "light-on-black PNG",
                try PNG.encode(RasterImage.drawing(ink, width: width, height: height, style: .lightOnBlack))
            ),
            ("PGM", PNM.encode(onWhite)),
            ("PPM", PNM.encode(onWhite.converted(to: .rgb))),
        ]
        for (name, bytes) in files {
            let image = try ImageFile.decode(bytes)
            let input = try MNISTPreprocessor().preprocess(image)
            let worst = Measure.worstDifference(input.pixels, reference.pixels)
            XCTAssertLessThanOrEqual(
                worst.difference, 2.0 / 255, "\(name): worst difference \(worst.difference)\n\(input.textPicture)")
        }
        let picture = reference.textPicture
        XCTAssertTrue(picture.contains("@"), picture)
        print("A '7' drawn on a \(width)x\(height) page, as the network will see it:\n\(picture)")
        print(reference.report)
        XCTAssertTrue("\(reference.report)".contains("inverted"), "\(reference.report)")
    }

    func testDecodeFromAFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mnist-image-test-\(getpid()).png")
        defer { try? FileManager.default.removeItem(at: url) }
        let image = RasterImage.drawing(seven(width: 60, height: 80), width: 60, height: 80, style: .darkOnTransparent)
        try Data(PNG.encode(image)).write(to: url)
        XCTAssertEqual(try ImageFile.decode(contentsOf: url), image)
    }

    func testATruncatedJPEGGivesAClearError() {
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00]
        XCTAssertThrowsError(try ImageFile.decode(jpeg)) { error in
            guard case .truncated(let format, _) = error as? ImageFileError else { return XCTFail("\(error)") }
            XCTAssertEqual(format, "JPEG")
            XCTAssertTrue("\(error)".hasPrefix("the JPEG file is truncated"), "\(error)")
        }
    }

    /// Median wall time of `runs` calls, in milliseconds.
    private func medianMilliseconds(runs: Int = 7, _ body: () throws -> Void) rethrows -> Double {
        var times = [Double]()
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return times.sorted()[runs / 2]
    }

    func testSpeedOfDecodeAndPreprocessOfA1000x1000PNG() throws {
        let (width, height) = (1000, 1000)
        let ink = seven(width: width, height: height)
        let cases: [(String, RasterImage)] = [
            ("clean grey drawing", RasterImage.drawing(ink, width: width, height: height, style: .darkOnWhite)),
            (
                "transparent RGBA drawing",
                RasterImage.drawing(ink, width: width, height: height, style: .darkOnTransparent)
            ),
            (
                "noisy grey-paper scan as RGB",
                RasterImage.drawing(
                    ink, width: width, height: height, style: .darkOnGreyPaper(paper: 200, noise: 6, seed: 1)
                )
                .converted(to: .rgb)
            ),
        ]
        for (name, image) in cases {
            let bytes = try PNG.encode(image)
            var decoded = image
            let decode = try medianMilliseconds { decoded = try ImageFile.decode(bytes) }
            var input: PreprocessedDigit?
            let preprocess = try medianMilliseconds { input = try MNISTPreprocessor().preprocess(decoded) }
            XCTAssertEqual(decoded, image)
            let centre = try XCTUnwrap(input).report.centreOfMass
            XCTAssertEqual(centre.x, 14.5, accuracy: 0.51)
            XCTAssertEqual(centre.y, 14.5, accuracy: 0.51)
            print(
                String(
                    format: "1000x1000 %@ (%d KB PNG): decode %.1f ms, preprocess %.1f ms, total %.1f ms (median of 7)",
                    name, bytes.count / 1024, decode, preprocess, decode + preprocess))
        }
    }
}
