import XCTest
@testable import ConvNet
final class ConvNetPlaceholderTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
