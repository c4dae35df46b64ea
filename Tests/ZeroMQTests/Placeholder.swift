import XCTest
@testable import ZeroMQ
final class ZeroMQPlaceholderTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
