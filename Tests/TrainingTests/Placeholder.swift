import XCTest
@testable import Training
final class TrainingPlaceholderTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
