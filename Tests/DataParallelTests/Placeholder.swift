import XCTest
@testable import DataParallel
final class DataParallelPlaceholderTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
