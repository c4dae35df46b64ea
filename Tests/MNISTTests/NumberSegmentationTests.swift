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

    func testTouchingDigitsAreCutWhereTheInkIsThinnest() throws {
        // Two zeros whose sides touch at x = 200 (each 60 wide with 7-pixel strokes).
        let image = page([(.zero, (143, 20, 60, 100)), (.zero, (197, 20, 60, 100))])
        let map = try MNISTPreprocessor().inkMap(image)
        let groups = NumberSegmentation.segment(map)
        XCTAssertEqual(groups.count, 1, "they touch")
        let pieces = NumberSegmentation.split(map, groups[0], into: 2)
        XCTAssertEqual(pieces.count, 2)
        XCTAssertEqual(Double(pieces[1].columns.lowerBound), 200, accuracy: 8, "\(pieces.map(\.columns))")
        let digits = try pieces.map { try MNISTPreprocessor().frame(map, regions: $0.regions, columns: $0.columns) }
        // Each piece is one zero: the two inputs are nearly mirror images of each other's place.
        XCTAssertEqual(digits.count, 2)
        for digit in digits { XCTAssertEqual(digit.report.placedBox.height, 20) }
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
