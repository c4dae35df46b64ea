// Grouping a number's ink into digits, on drawings whose digits and boxes are known by construction.
import TestSupport
import XCTest

@testable import MNIST

final class NumberSegmentationTests: XCTestCase {
    private let (width, height) = (420, 140)

    /// Dark ink on white: `sketches` drawn in the given boxes (x, y, width, height), plus `blobs`
    /// (filled rectangles).
    private func page(_ sketches: [(DigitSketch, (Double, Double, Double, Double))], blobs: [PixelRectangle] = [])
        -> RasterImage
    {
        var ink = [Float](repeating: 0, count: width * height)
        for (sketch, box) in sketches {
            let coverage = sketch.coverage(width: width, height: height, box: box, strokeWidth: 7)
            for index in ink.indices { ink[index] = max(ink[index], coverage[index]) }
        }
        for blob in blobs {
            for y in blob.y..<(blob.y + blob.height) {
                for x in blob.x..<(blob.x + blob.width) { ink[y * width + x] = 1 }
            }
        }
        return RasterImage(
            width: width, height: height, layout: .grey, samples: ink.map { UInt8(((1 - $0) * 255).rounded()) })
    }

    func testSeparateDigitsComeLeftToRight() throws {
        let image = page([(.zero, (250, 20, 60, 100)), (.seven, (40, 20, 60, 100)), (.one, (150, 20, 50, 100))])
        let map = try MNISTPreprocessor().inkMap(image)
        let groups = NumberSegmentation.segment(map)
        XCTAssertEqual(groups.count, 3)
        XCTAssertEqual(groups.map(\.box.x), groups.map(\.box.x).sorted())
        // The 7's box starts at 40 + 10% of 60, less half the stroke.
        XCTAssertEqual(Double(groups[0].box.x), 42.5, accuracy: 2)
        XCTAssertEqual(Double(groups[2].box.x), 250, accuracy: 10)
    }

    func testAPieceAboveJoinsItsDigitAndADotGoes() throws {
        // A 1 with a separate short bar over it (as a 5's bar drawn apart), and a small dot far away.
        let image = page(
            [(.one, (60, 40, 50, 90)), (.zero, (200, 30, 60, 100))],
            blobs: [
                PixelRectangle(x: 55, y: 10, width: 60, height: 8),
                PixelRectangle(x: 360, y: 110, width: 14, height: 14),
            ])
        let map = try MNISTPreprocessor().inkMap(image)
        XCTAssertEqual(map.regions.count, 4)
        let groups = NumberSegmentation.segment(map)
        XCTAssertEqual(groups.count, 2, "\(groups.map(\.box))")
        XCTAssertEqual(groups[0].regions.count, 2, "the bar joined the 1")
        XCTAssertEqual(groups[0].box.y, 10)
    }

    /// Two strokes slanted like a quick hand's, 12 pixels apart, joined by a bar 3 pixels thick: their
    /// columns overlap, so every straight cut crosses one of them, but a cut can follow the gap.
    private func slantedPair() -> (image: RasterImage, left: PixelRectangle, right: PixelRectangle) {
        var samples = [UInt8](repeating: 250, count: width * height)
        func start(_ y: Int) -> Int { 140 - (y - 20) * 16 / 100 }
        for y in 20..<120 {
            for x in start(y)..<(start(y) + 10) { samples[y * width + x] = 10 }
            for x in (start(y) + 22)..<(start(y) + 32) { samples[y * width + x] = 10 }
            if (68..<71).contains(y) { for x in (start(y) + 10)..<(start(y) + 22) { samples[y * width + x] = 10 } }
        }
        return (
            RasterImage(width: width, height: height, layout: .grey, samples: samples),
            PixelRectangle(x: start(119), y: 20, width: start(20) + 10 - start(119), height: 100),
            PixelRectangle(x: start(119) + 22, y: 20, width: start(20) + 10 - start(119), height: 100)
        )
    }

    func testACutFollowsTheGapBetweenDigitsWhoseColumnsOverlap() throws {
        let (image, left, right) = slantedPair()
        let map = try MNISTPreprocessor().inkMap(image)
        let groups = NumberSegmentation.segment(map)
        XCTAssertEqual(groups.count, 1, "they touch")
        let group = try XCTUnwrap(groups.first)
        // Straight down column 148, between the strokes' middles, crosses both strokes and the bar.
        let straight = (group.box.y..<(group.box.y + group.box.height)).filter { map.ink(at: $0 * width + 148) > 0 }
        XCTAssertGreaterThan(straight.count, 20)

        let cut = NumberSegmentation.cutPath(map, group, near: 148, reach: 12)
        XCTAssertEqual(cut.columns.count, group.box.height)
        XCTAssertLessThanOrEqual(cut.inkCrossed, 4, "only the bar: \(cut.columns)")
        XCTAssertEqual(cut.strokesCrossed, 1)
        let digits = try NumberSegmentation.pieces(group, cutAlong: [cut]).map {
            try MNISTPreprocessor().frame(map, [$0])
        }
        XCTAssertEqual(digits.count, 2)
        // Each side of the cut holds one stroke and half the bar (within the stroke's box).
        for (digit, stroke) in zip(digits, [left, right]) {
            XCTAssertEqual(Double(digit.report.cropBox.y), Double(stroke.y), accuracy: 1)
            XCTAssertEqual(Double(digit.report.cropBox.height), Double(stroke.height), accuracy: 1)
            XCTAssertEqual(Double(digit.report.cropBox.x), Double(stroke.x), accuracy: 2, "\(digit.report.cropBox)")
            XCTAssertEqual(
                Double(digit.report.cropBox.width), Double(stroke.width), accuracy: 2, "\(digit.report.cropBox)")
        }

        // The candidates include it, and none leaves less than a tenth of the ink on a side.
        let cuts = NumberSegmentation.cuts(map, group, spacing: 12, reach: 12, limit: 4)
        XCTAssertFalse(cuts.isEmpty)
        XCTAssertLessThanOrEqual(cuts.map(\.inkCrossed).min() ?? .max, 4)
        XCTAssertEqual(cuts.map(\.middle), cuts.map(\.middle).sorted())
        for cut in cuts {
            XCTAssertTrue((group.box.x + 5..<(group.box.x + group.box.width - 5)).contains(Int(cut.middle)))
        }
    }

    func testADigitCanBeMadeOfSeveralGroupsAndPartsOfThem() throws {
        // A zero, and the slanted pair to its right: the zero with the pair's left stroke is one digit.
        let (pair, _, right) = slantedPair()
        var samples = pair.samples
        let zero = page([(.zero, (20, 20, 60, 100))])
        for index in samples.indices { samples[index] = min(samples[index], zero.samples[index]) }
        let map = try MNISTPreprocessor().inkMap(
            RasterImage(width: width, height: height, layout: .grey, samples: samples))
        let groups = NumberSegmentation.segment(map)
        XCTAssertEqual(groups.count, 2)
        let cut = NumberSegmentation.cutPath(map, groups[1], near: 148, reach: 12)
        var part = groups[1]
        part.right = cut
        let digit = try MNISTPreprocessor().frame(map, [groups[0], part])
        XCTAssertEqual(Double(digit.report.cropBox.x), Double(groups[0].box.x), accuracy: 1)
        // It ends at the cut, before the right stroke's far edge.
        let end = digit.report.cropBox.x + digit.report.cropBox.width
        XCTAssertLessThan(end, right.x + right.width - 10, "\(digit.report.cropBox)")
        XCTAssertGreaterThan(end, right.x - 4, "\(digit.report.cropBox)")
    }
}

extension NumberSegmentationTests {
    func testManySeparateMarksAreNotANumberAndCostLittle() throws {
        // A 40x40 grid of equal dots: 1,600 regions, none a speck of another.
        var samples = [UInt8](repeating: 240, count: 400 * 400)
        for row in 0..<40 {
            for column in 0..<40 {
                for y in 0..<4 { for x in 0..<4 { samples[(row * 10 + 3 + y) * 400 + column * 10 + 3 + x] = 20 } }
            }
        }
        let map = try MNISTPreprocessor().inkMap(RasterImage(width: 400, height: 400, layout: .grey, samples: samples))
        XCTAssertEqual(map.regions.count, 1600)
        let start = Date()
        XCTAssertEqual(NumberSegmentation.segment(map), [])
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
    }
}
