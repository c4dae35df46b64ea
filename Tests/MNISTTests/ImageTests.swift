import XCTest
@testable import MNIST
