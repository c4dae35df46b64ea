// The preprocessing steps only photos need: evening out the lighting and erasing ruled lines. Each is
// checked on images whose answer is known by construction (a drawn 7 under a known gradient or
// shadow, lines at known rows), and each must leave an evenly lit image without lines untouched.
import TestSupport
import XCTest

@testable import MNIST

final class PhotoPreprocessTests: XCTestCase {
    private let (width, height) = (320, 240)

    /// A 7's ink coverage (0...1) on the page, its box known.
    private var seven: [Float] {
        DigitSketch.seven.coverage(
            width: width, height: height, box: (120, 60, 70, 110), strokeWidth: Double(width) / 40)
    }

    /// Dark ink (reflectance 0.1) on paper (0.9) under `light(x, y)`, as grey bytes.
    private func page(ink: [Float], light: (Int, Int) -> Float) -> [UInt8] {
        (0..<(width * height)).map { index in
            let reflectance = 0.9 * (1 - ink[index]) + 0.1 * ink[index]
            return UInt8((reflectance * light(index % width, index / width) * 255).rounded())
        }
    }

    func testAnEvenlyLitPageWithoutLinesIsLeftAsItWas() throws {
        let grey = page(ink: seven) { _, _ in 1 }
        let lighting = LightingCorrection.correct(
            grey: grey, width: width, height: height, darkInk: true, contrast: 204)
        XCTAssertFalse(lighting.corrected)
        XCTAssertEqual(lighting.grey, grey)
        let lines = RuledLines.erase(grey: grey, width: width, height: height, darkInk: true, paper: 230, contrast: 204)
        XCTAssertEqual(lines.horizontal + lines.vertical, 0)
        XCTAssertEqual(lines.grey, grey)
    }

    func testAGradientIsEvenedOutAndTheInkKeepsItsContrast() throws {
        // Light falls from 1 on the left to 0.45 on the right.
        let light: (Int, Int) -> Float = { x, _ in 1 - 0.55 * Float(x) / Float(319) }
        let grey = page(ink: seven, light: light)
        let lighting = LightingCorrection.correct(
            grey: grey, width: width, height: height, darkInk: true, contrast: 150)
        XCTAssertTrue(lighting.corrected)
        XCTAssertGreaterThan(lighting.backgroundRange, 90)
        let ink = seven
        var paperLevels: [Int] = [], inkRatios: [Float] = []
        for index in 0..<(width * height) {
            if ink[index] == 0 { paperLevels.append(Int(lighting.grey[index])) }
            if ink[index] == 1 { inkRatios.append(Float(lighting.grey[index]) / Float(lighting.grey[0])) }
        }
        let paper = paperLevels.sorted()
        // Before: the paper ran from 230 down to 103. After: within a few levels everywhere.
        XCTAssertLessThanOrEqual(paper[paper.count - 1] - paper[0], 6, "paper \(paper[0])...\(paper.last!)")
        // The ink is a ninth of the paper under any light, as it was where the light was full.
        XCTAssertEqual(inkRatios.max()!, 1.0 / 9, accuracy: 0.02)
        XCTAssertEqual(inkRatios.min()!, 1.0 / 9, accuracy: 0.02)
    }

    func testAShadowOverMostOfTheBorderIsNotTakenForPaperWithLightInk() throws {
        // Everything right of a soft edge at x = 90 is in a shadow at 40% light: most of the border
        // is in it, and the lit paper is lighter than the shadowed paper's median by far.
        let light: (Int, Int) -> Float = { x, _ in 1 - 0.6 / (1 + exp(-Float(x - 90) / 3)) }
        let grey = page(ink: seven, light: light)
        let digit = try MNISTPreprocessor().preprocess(
            RasterImage(width: width, height: height, layout: .grey, samples: grey))
        XCTAssertTrue(digit.report.wasInverted, "\(digit.report)")
        // The crop is the 7's, as on the evenly lit page, not the lit strip.
        let clean = try MNISTPreprocessor().preprocess(
            RasterImage(width: width, height: height, layout: .grey, samples: page(ink: seven) { _, _ in 1 }))
        XCTAssertEqual(digit.report.cropBox, clean.report.cropBox, "\(digit.report)")
        XCTAssertLessThanOrEqual(Measure.worstDifference(digit.pixels, clean.pixels).difference, 0.25)
    }

    /// White paper, lines of grey 150 two pixels thick at rows 40, 100, 160 and 220 (tilted by
    /// `slope` rows per column), and a black vertical stroke 8 pixels wide down the middle.
    private func ruledPage(slope: Double, lineRows: [Int] = [40, 100, 160, 220]) -> [UInt8] {
        var grey = [UInt8](repeating: 240, count: width * height)
        for row in lineRows {
            for x in 0..<width {
                let y = row + Int((Double(x - width / 2) * slope).rounded())
                for dy in 0..<2 where (0..<height).contains(y + dy) { grey[(y + dy) * width + x] = 150 }
            }
        }
        for y in 30..<210 { for x in 156..<164 { grey[y * width + x] = 20 } }
        return grey
    }

    func testRuledLinesAreErasedAndTheStrokeThatCrossesThemIsKept() throws {
        for slope in [0, 0.03, -0.05] {
            let grey = ruledPage(slope: slope)
            let result = RuledLines.erase(
                grey: grey, width: width, height: height, darkInk: true, paper: 240, contrast: 220)
            XCTAssertEqual(result.horizontal, 4, "slope \(slope)")
            XCTAssertEqual(result.vertical, 0, "slope \(slope)")
            for index in 0..<(width * height) {
                let (x, y) = (index % width, index / width)
                let stroke = (156..<164).contains(x) && (30..<210).contains(y)
                if stroke {
                    XCTAssertEqual(result.grey[index], 20, "the stroke at (\(x), \(y)), slope \(slope)")
                } else if !(150..<170).contains(x) {
                    XCTAssertEqual(result.grey[index], 240, "no line left at (\(x), \(y)), slope \(slope)")
                }
            }
        }
        // Squared paper: the same lines across, and down.
        var grid = ruledPage(slope: 0)
        for x in [60, 250] { for y in 0..<height { grid[y * width + x] = 150 } }
        let squared = RuledLines.erase(
            grey: grid, width: width, height: height, darkInk: true, paper: 240, contrast: 220)
        XCTAssertEqual(squared.horizontal, 4)
        XCTAssertEqual(squared.vertical, 2)
        XCTAssertEqual(squared.grey.filter { $0 == 150 }.count, 0)
    }

    func testOneLineAcrossIsAStrokeNotRuling() throws {
        // A tightly cropped 7's bar, or an underline: one line alone is left as it is.
        let grey = ruledPage(slope: 0, lineRows: [100])
        let result = RuledLines.erase(
            grey: grey, width: width, height: height, darkInk: true, paper: 240, contrast: 220)
        XCTAssertEqual(result.horizontal, 0)
        XCTAssertEqual(result.grey, grey)
    }

    func testAPhotoOfADigitGivesNearlyTheInputOfItsCleanScan() throws {
        // The 7 under everything a phone photo brings but the JPEG, against the same 7 evenly lit.
        let digit = DigitSketch.seven.coverage(width: 28, height: 28, box: (6, 4, 14, 20), strokeWidth: 2.5)
        let bytes = digit.map { UInt8(($0 * 255).rounded()) }
        var random = TestGenerator(seed: 16)
        var conditions = PhotoConditions.phone
        conditions.remove([.jpeg, .rotated])
        let photo = PhotoRendering.render(bytes, conditions: conditions, using: &random)
        var again = TestGenerator(seed: 16)
        let clean = PhotoRendering.render(bytes, conditions: [.offCentre], using: &again)
        let fromPhoto = try MNISTPreprocessor().preprocess(photo)
        let fromClean = try MNISTPreprocessor().preprocess(clean)
        let difference = zip(fromPhoto.pixels, fromClean.pixels).map { abs($0 - $1) }.reduce(0, +) / 784
        XCTAssertLessThan(difference, 0.05, "\(fromPhoto.report)\n\(fromPhoto.textPicture)\n\(fromClean.textPicture)")
    }
}

final class SlidingExtremeTests: XCTestCase {
    /// The van Herk / Gil-Werman filter against the plain definition, on random images and radii.
    func testTheFastFilterIsTheLargestOrSmallestInTheWindow() {
        var random = TestGenerator(seed: 9)
        for (width, height, radius) in [(1, 1, 2), (7, 3, 1), (20, 13, 4), (31, 17, 9), (5, 40, 30)] {
            let values = random.uniformArray(width * height, 0, 255)
            for maximum in [true, false] {
                let fast = LightingCorrection.extremeFilter(
                    values, width: width, height: height, radius: radius, maximum: maximum)
                for y in 0..<height {
                    for x in 0..<width {
                        var best = values[y * width + x]
                        for yy in max(0, y - radius)...min(height - 1, y + radius) {
                            for xx in max(0, x - radius)...min(width - 1, x + radius) {
                                best = maximum ? max(best, values[yy * width + xx]) : min(best, values[yy * width + xx])
                            }
                        }
                        XCTAssertEqual(fast[y * width + x], best, "\(width)x\(height) r\(radius) at (\(x), \(y))")
                    }
                }
            }
        }
    }
}
