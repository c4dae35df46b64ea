// Tests of the MNIST preprocessing (a pure function): geometry (size 20, centre of mass at the
// centre), polarity, alpha, specks, blank images, and the area-averaging resampler against naive
// references. Every comparison prints the worst difference and where it is.
import XCTest
import TestSupport

@testable import MNIST

final class PreprocessTests: XCTestCase {
    let preprocessor = MNISTPreprocessor()

    private func digit(
        _ sketch: DigitSketch, canvas: (Int, Int), box: (Double, Double, Double, Double),
        stroke: Double, style: InkStyle = .darkOnWhite
    ) -> RasterImage {
        let ink = sketch.coverage(
            width: canvas.0, height: canvas.1, box: (box.0, box.1, box.2, box.3), strokeWidth: stroke)
        return RasterImage.drawing(ink, width: canvas.0, height: canvas.1, style: style)
    }

    private func assertClose(
        _ a: PreprocessedDigit, _ b: PreprocessedDigit, worst tolerance: Float, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let worst = Measure.worstDifference(a.pixels, b.pixels)
        XCTAssertLessThanOrEqual(
            worst.difference, tolerance,
            "\(what): worst difference \(worst.difference) at (\(worst.index % 28), \(worst.index / 28))\n"
                + "\(a.textPicture)\n\(b.textPicture)", file: file, line: line)
    }

    private func assertCentred(
        _ result: PreprocessedDigit, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let centre = Measure.centreOfMass(result.pixels, side: 28)
        XCTAssertEqual(
            centre.x, 14.5, accuracy: 0.51, "\(what): centre of mass x\n\(result.textPicture)", file: file, line: line)
        XCTAssertEqual(
            centre.y, 14.5, accuracy: 0.51, "\(what): centre of mass y\n\(result.textPicture)", file: file, line: line)
        XCTAssertEqual(result.report.centreOfMass.x, centre.x, accuracy: 1e-3, file: file, line: line)
        XCTAssertEqual(result.report.centreOfMass.y, centre.y, accuracy: 1e-3, file: file, line: line)
    }

    // MARK: - Geometry

    func testSmallDigitInCornerOfLargeCanvasEndsUpCentredAndTwentyTall() throws {
        // A '7' 90 px tall in the top-left corner of a 1000x800 page.
        let image = digit(.seven, canvas: (1000, 800), box: (30, 20, 60, 90), stroke: 9)
        let result = try preprocessor.preprocess(image)
        assertCentred(result, "corner seven")
        XCTAssertEqual(result.report.placedBox.height, 20)
        XCTAssertEqual(Measure.inkExtent(result.pixels, side: 28).height, 20, "\n\(result.textPicture)")
        XCTAssertFalse(result.report.wasInverted == false, "dark ink on white must be inverted")
        XCTAssertLessThan(result.report.cropBox.x, 40)
        XCTAssertLessThan(result.report.cropBox.y, 30)
        // The same digit drawn centred on a small canvas gives nearly the same input.
        let small = try preprocessor.preprocess(digit(.seven, canvas: (200, 150), box: (70, 30, 60, 90), stroke: 9))
        assertClose(result, small, worst: 0.02, "same seven on another canvas")
    }

    func testWideDigitIsScaledByItsWidth() throws {
        // A squat '0', wider than tall: the width becomes 20, the aspect ratio is kept.
        let result = try preprocessor.preprocess(digit(.zero, canvas: (400, 300), box: (100, 120, 160, 80), stroke: 12))
        assertCentred(result, "wide zero")
        let crop = result.report.cropBox
        XCTAssertGreaterThan(crop.width, crop.height)
        let expectedHeight = Double(crop.height) * 20 / Double(crop.width)
        XCTAssertEqual(result.report.placedBox.width, 20)
        XCTAssertEqual(result.report.placedBox.height, Int(expectedHeight.rounded(.up)))
        let extent = Measure.inkExtent(result.pixels, side: 28)
        XCTAssertEqual(extent.width, 20)
        XCTAssertEqual(Double(extent.height), expectedHeight, accuracy: 1)
    }

    func testTinyDigitIsScaledUp() throws {
        // A '1' only 12 pixels tall is scaled up to 20.
        let result = try preprocessor.preprocess(digit(.one, canvas: (40, 40), box: (10, 14, 8, 12), stroke: 2))
        assertCentred(result, "tiny one")
        XCTAssertEqual(result.report.placedBox.height, 20)
    }

    func testCentredMNISTLikeDigitStaysPut() throws {
        for (name, sketch) in [("zero", DigitSketch.zero), ("seven", .seven), ("one", .one), ("four", .four)] {
            // Make an MNIST-like input from a big drawing, then feed it back as a 28x28 image.
            let first = try preprocessor.preprocess(
                digit(sketch, canvas: (300, 300), box: (100, 60, 110, 170), stroke: 18))
            let mnistLike = RasterImage(width: 28, height: 28, layout: .grey, samples: first.bytes)
            let second = try preprocessor.preprocess(mnistLike)
            XCTAssertFalse(second.report.wasInverted, "\(name): light on black is already MNIST polarity")
            XCTAssertEqual(second.report.placedBox, first.report.placedBox, name)
            assertClose(first, second, worst: 0.15, "\(name) fed back")
            XCTAssertLessThan(Measure.meanAbsoluteDifference(first.pixels, second.pixels), 0.01, name)
        }
    }

    // MARK: - Polarity, alpha, paper

    func testInvertedInputGivesTheSameResult() throws {
        for (name, sketch) in [("zero", DigitSketch.zero), ("seven", .seven), ("four", .four)] {
            let dark = try preprocessor.preprocess(
                digit(sketch, canvas: (240, 320), box: (40, 70, 90, 140), stroke: 14))
            let light = try preprocessor.preprocess(
                digit(sketch, canvas: (240, 320), box: (40, 70, 90, 140), stroke: 14, style: .lightOnBlack))
            XCTAssertTrue(dark.report.wasInverted, name)
            XCTAssertFalse(light.report.wasInverted, name)
            assertClose(dark, light, worst: 2.0 / 255, "\(name) inverted")
        }
    }

    func testTransparentBackgroundEqualsDrawingOnWhite() throws {
        for (name, sketch) in [("zero", DigitSketch.zero), ("seven", .seven)] {
            let onWhite = try preprocessor.preprocess(
                digit(sketch, canvas: (180, 180), box: (50, 30, 70, 120), stroke: 11))
            let transparent = try preprocessor.preprocess(
                digit(sketch, canvas: (180, 180), box: (50, 30, 70, 120), stroke: 11, style: .darkOnTransparent))
            XCTAssertTrue(transparent.report.wasInverted, name)
            assertClose(onWhite, transparent, worst: 2.0 / 255, "\(name) transparent vs white")
        }
    }

    func testNoisyGreyPaperGivesNearlyTheCleanResult() throws {
        let clean = try preprocessor.preprocess(digit(.seven, canvas: (500, 500), box: (200, 150, 80, 130), stroke: 10))
        let noisy = try preprocessor.preprocess(
            digit(
                .seven, canvas: (500, 500), box: (200, 150, 80, 130), stroke: 10,
                style: .darkOnGreyPaper(paper: 170, noise: 12, seed: 7)))
        XCTAssertTrue(noisy.report.wasInverted)
        XCTAssertEqual(noisy.report.paperLevel, 170, accuracy: 3)
        XCTAssertEqual(noisy.report.cropBox.height, clean.report.cropBox.height, accuracy: 2)
        assertCentred(noisy, "noisy seven")
        let mean = Measure.meanAbsoluteDifference(clean.pixels, noisy.pixels)
        XCTAssertLessThan(mean, 0.03, "mean difference \(mean)\n\(clean.textPicture)\n\(noisy.textPicture)")
    }

    func testChalkOnABlackboard() throws {
        // Light ink on dark-grey paper: no inversion, and the same shape as dark on white.
        let ink = DigitSketch.zero.coverage(width: 200, height: 200, box: (60, 40, 70, 110), strokeWidth: 10)
        let board = RasterImage(
            width: 200, height: 200, layout: .grey,
            samples: ink.map { UInt8((60 + 170 * Double($0)).rounded()) })
        let chalk = try preprocessor.preprocess(board)
        XCTAssertFalse(chalk.report.wasInverted)
        XCTAssertEqual(chalk.report.paperLevel, 60)
        XCTAssertEqual(chalk.report.inkLevel, 230)
        let paper = try preprocessor.preprocess(digit(.zero, canvas: (200, 200), box: (60, 40, 70, 110), stroke: 10))
        assertClose(chalk, paper, worst: 3.0 / 255, "chalk vs paper")
    }

    func testDigitCroppedTightToTheImageEdges() throws {
        // A user's file cropped right to the ink: the ink touches all four borders.
        let ink = DigitSketch.seven.coverage(width: 64, height: 96, box: (-4, -6, 72, 106), strokeWidth: 10)
        let result = try preprocessor.preprocess(RasterImage.drawing(ink, width: 64, height: 96, style: .darkOnWhite))
        XCTAssertTrue(result.report.wasInverted)
        XCTAssertEqual(result.report.placedBox.height, 20)
        assertCentred(result, "tight seven")
    }

    func testSpecksAreIgnored() throws {
        var ink = DigitSketch.seven.coverage(width: 400, height: 400, box: (150, 120, 70, 110), strokeWidth: 10)
        // Three 3x3 specks far from the digit, one near each of three corners.
        for (sx, sy) in [(20, 20), (370, 30), (30, 360)] {
            for y in sy..<(sy + 3) { for x in sx..<(sx + 3) { ink[y * 400 + x] = 1 } }
        }
        let speckled = try preprocessor.preprocess(
            RasterImage.drawing(ink, width: 400, height: 400, style: .darkOnWhite))
        let clean = try preprocessor.preprocess(digit(.seven, canvas: (400, 400), box: (150, 120, 70, 110), stroke: 10))
        XCTAssertEqual(speckled.report.speckCount, 3)
        XCTAssertEqual(speckled.report.cropBox, clean.report.cropBox)
        assertClose(clean, speckled, worst: 1e-6, "specks")
    }

    func testTwoStrokeDigitKeepsBothStrokes() throws {
        let result = try preprocessor.preprocess(digit(.four, canvas: (300, 300), box: (80, 60, 110, 160), stroke: 12))
        XCTAssertEqual(result.report.keptRegionCount, 2, "\n\(result.textPicture)")
        XCTAssertEqual(result.report.speckCount, 0)
        assertCentred(result, "four")
    }

    func testBlankImagesAreAnError() {
        let white = RasterImage(width: 64, height: 48, layout: .grey, filledWith: [255])
        let grey = RasterImage(width: 64, height: 48, layout: .rgb, filledWith: [120, 120, 120])
        let transparent = RasterImage(width: 30, height: 30, layout: .rgba, filledWith: [0, 0, 0, 0])
        var generator = TestGenerator(seed: 3)
        let faintNoise = RasterImage(
            width: 100, height: 100, layout: .grey,
            samples: (0..<10_000).map { _ in UInt8.random(in: 240...250, using: &generator) })
        for (name, image) in [
            ("white", white), ("grey", grey), ("transparent", transparent), ("faint noise", faintNoise),
        ] {
            XCTAssertThrowsError(try preprocessor.preprocess(image), name) { error in
                guard case PreprocessingError.blankImage = error else { return XCTFail("\(name): \(error)") }
                XCTAssertTrue("\(error)".contains("blank"), "\(error)")
            }
        }
    }

    func testColourDigitOnColouredPaper() throws {
        // Blue ink on yellow paper: luma decides (blue is darker than yellow).
        let ink = DigitSketch.zero.coverage(width: 120, height: 160, box: (30, 30, 60, 100), strokeWidth: 8)
        var samples = [UInt8]()
        for value in ink {
            let paper: [Float] = [250, 230, 120], pen: [Float] = [20, 40, 200]
            samples += (0..<3).map { UInt8((paper[$0] * (1 - value) + pen[$0] * value).rounded()) }
        }
        let result = try preprocessor.preprocess(RasterImage(width: 120, height: 160, layout: .rgb, samples: samples))
        XCTAssertTrue(result.report.wasInverted)
        assertCentred(result, "blue zero")
        XCTAssertEqual(result.report.placedBox.height, 20)
    }

    func testOutputIsInRangeAndBytesMatch() throws {
        let result = try preprocessor.preprocess(digit(.zero, canvas: (100, 100), box: (20, 10, 50, 80), stroke: 7))
        XCTAssertEqual(result.pixels.count, 784)
        XCTAssertTrue(result.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(result.pixels.max(), 1)
        XCTAssertEqual(result.bytes.count, 784)
        XCTAssertEqual(result.bytes[14 * 28 + 14], 0, "a zero's middle is empty")
    }

    // MARK: - Text picture

    func testTextPictureUsesTheShadeRamp() {
        let picture = TextPicture.render([0, 0.5, 1, 1.0 / 9], width: 2, height: 2, columnsPerPixel: 1)
        XCTAssertEqual(picture, "+--+\n| +|\n|@.|\n+--+")
        let digit = TextPicture.render([Float](repeating: 1, count: 784), width: 28, height: 28)
        XCTAssertEqual(digit.split(separator: "\n").count, 30)
        XCTAssertEqual(digit.split(separator: "\n")[1].count, 58)
    }

    // MARK: - Area resampling against naive references

    /// The exact 2D reference: each output pixel is the overlap area of its footprint with every
    /// source pixel, computed as a rectangle intersection (not separably).
    private func naiveAreaResample(_ pixels: [Float], width: Int, height: Int, scale: Double)
        -> (width: Int, height: Int, pixels: [Float])
    {
        let extentX = Double(width) * scale, extentY = Double(height) * scale
        let outWidth = Int((extentX - 1e-9).rounded(.up)), outHeight = Int((extentY - 1e-9).rounded(.up))
        let marginX = (Double(outWidth) - extentX) / 2, marginY = (Double(outHeight) - extentY) / 2
        var out = [Float](repeating: 0, count: outWidth * outHeight)
        for oy in 0..<outHeight {
            for ox in 0..<outWidth {
                // Footprint in source coordinates.
                let left = (Double(ox) - marginX) / scale, right = (Double(ox) + 1 - marginX) / scale
                let top = (Double(oy) - marginY) / scale, bottom = (Double(oy) + 1 - marginY) / scale
                var sum = 0.0
                for sy in 0..<height {
                    for sx in 0..<width {
                        let overlapX = max(0, min(right, Double(sx + 1)) - max(left, Double(sx)))
                        let overlapY = max(0, min(bottom, Double(sy + 1)) - max(top, Double(sy)))
                        sum += overlapX * overlapY * Double(pixels[sy * width + sx])
                    }
                }
                out[oy * outWidth + ox] = Float(sum * scale * scale)
            }
        }
        return (outWidth, outHeight, out)
    }

    func testDownscalingAConstantImageKeepsItsValue() {
        let constant = [Float](repeating: 0.6, count: 90 * 60)
        let result = AreaResampler.resample(constant, width: 90, height: 60, scale: 20.0 / 90)
        XCTAssertEqual(result.width, 20)
        XCTAssertEqual(result.height, 14)  // 13.33 rounded up; edge rows partly covered
        for y in 1..<(result.height - 1) {
            for x in 0..<result.width {
                XCTAssertEqual(result.pixels[y * result.width + x], 0.6, accuracy: 1e-5, "(\(x), \(y))")
            }
        }
        // The partly covered edge rows share the missing third of a row equally.
        XCTAssertEqual(result.pixels[0], 0.6 * Float((1 - (14 - 40.0 / 3) / 2)), accuracy: 1e-5)
        let total = result.pixels.reduce(0, +)
        XCTAssertEqual(total, 0.6 * Float(90 * 60) * Float(20.0 / 90 * 20.0 / 90), accuracy: 1e-3, "ink is conserved")
    }

    func testDownscalingByAnIntegerFactorEqualsBlockMeans() {
        var generator = TestGenerator(seed: 11)
        let width = 60, height = 40, factor = 4
        let pixels = (0..<(width * height)).map { _ in Float.random(in: 0...1, using: &generator) }
        let result = AreaResampler.resample(pixels, width: width, height: height, scale: 1.0 / Double(factor))
        XCTAssertEqual(result.width, 15)
        XCTAssertEqual(result.height, 10)
        var worst: Float = 0
        for by in 0..<10 {
            for bx in 0..<15 {
                var sum: Float = 0
                for y in 0..<factor {
                    for x in 0..<factor { sum += pixels[(by * factor + y) * width + bx * factor + x] }
                }
                worst = max(worst, abs(result.pixels[by * 15 + bx] - sum / Float(factor * factor)))
            }
        }
        XCTAssertLessThan(worst, 1e-5, "worst difference from block means: \(worst)")
    }

    func testFractionalScalesMatchTheNaive2DReference() {
        var generator = TestGenerator(seed: 5)
        for (width, height, scale) in [
            (37, 23, 20.0 / 37), (9, 14, 20.0 / 14), (50, 7, 0.4), (3, 3, 5.5), (1, 17, 20.0 / 17),
        ] {
            let pixels = (0..<(width * height)).map { _ in Float.random(in: 0...1, using: &generator) }
            let fast = AreaResampler.resample(pixels, width: width, height: height, scale: scale)
            let naive = naiveAreaResample(pixels, width: width, height: height, scale: scale)
            XCTAssertEqual(fast.width, naive.width)
            XCTAssertEqual(fast.height, naive.height)
            let worst = Measure.worstDifference(fast.pixels, naive.pixels)
            XCTAssertLessThan(
                worst.difference, 1e-5,
                "\(width)x\(height) scale \(scale): worst \(worst.difference) at index \(worst.index)")
        }
    }
}
