// The number reader's scoring, on inputs whose shapes are known by construction.
import XCTest

@testable import Training

final class NumberReaderTests: XCTestCase {
    /// A 28x28 frame with ink wherever `inked(x, y)` holds.
    private func frame(_ inked: (Double, Double) -> Bool) -> [Float] {
        (0..<(28 * 28)).map { inked(Double($0 % 28), Double($0 / 28)) ? 1 : 0 }
    }

    func testCurvatureTellsAStraightStrokeFromASliverOfARound() {
        let upright = frame { x, y in abs(x - 14) < 1.5 && (4...23).contains(y) }
        let slanted = frame { x, y in abs(x - (20 - (y - 4) * 0.4)) < 1.5 && (4...23).contains(y) }
        // The left third of a ring of radius 9: what cutting a 0 in three leaves at its side.
        let sliver = frame { x, y in
            let radius = ((x - 14) * (x - 14) + (y - 14) * (y - 14)).squareRoot()
            return abs(radius - 9) < 1.5 && x < 9
        }
        let ring = frame { x, y in abs(((x - 14) * (x - 14) + (y - 14) * (y - 14)).squareRoot() - 9) < 1.5 }
        let straightest = NumberReader.Weights().straightest
        XCTAssertLessThan(NumberReader.curvature(upright, side: 28), straightest)
        XCTAssertLessThan(NumberReader.curvature(slanted, side: 28), straightest)
        XCTAssertGreaterThan(NumberReader.curvature(sliver, side: 28), straightest)
        XCTAssertGreaterThan(NumberReader.curvature(ring, side: 28), 0.9)
        XCTAssertEqual(NumberReader.curvature([Float](repeating: 0, count: 784), side: 28), 1)
    }

    func testWidthPenaltyIsZeroWithinMNISTsRangeAndGrowsOutsideIt() {
        XCTAssertEqual(NumberReader.widthPenalty(0.25, digit: 1), 0)
        XCTAssertEqual(NumberReader.widthPenalty(0.9, digit: 0), 0)
        XCTAssertGreaterThan(NumberReader.widthPenalty(0.3, digit: 0), 4, "a 0 a third as wide as tall")
        XCTAssertGreaterThan(NumberReader.widthPenalty(1.4, digit: 4), 6, "two digits read as one")
        XCTAssertLessThan(NumberReader.widthPenalty(1.1, digit: 4), NumberReader.widthPenalty(1.2, digit: 4))
    }

    func testShortfallSparesFlatTwosButNotShortOnes() {
        let tallness = NumberReader.Weights().tallness
        XCTAssertEqual(NumberReader.shortfall(0.95, digit: 1, tallness: tallness), 0, "a 1 of full height")
        XCTAssertEqual(NumberReader.shortfall(0.55, digit: 2, tallness: tallness), 0, "a wide, flat 2")
        XCTAssertGreaterThan(NumberReader.shortfall(0.3, digit: 1, tallness: tallness), 0.4, "a 7's bar read as a 1")
        XCTAssertGreaterThan(NumberReader.shortfall(0.45, digit: 6, tallness: tallness), 0.2, "the foot of a 0 as a 6")
        XCTAssertLessThan(
            NumberReader.shortfall(0.5, digit: 9, tallness: tallness),
            NumberReader.shortfall(0.4, digit: 9, tallness: tallness))
    }
}
