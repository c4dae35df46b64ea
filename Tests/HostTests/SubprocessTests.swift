// `Subprocess`, the one child-process runner: `run` throws for a failed or overdue program, `capture`
// hands back the exit status and both streams, with extra environment variables and a timeout.
// The children are /bin/sh one-liners; nothing here needs the network or the dataset.
import Foundation
import Host
import XCTest

final class SubprocessTests: XCTestCase {
    func testCaptureReturnsTheStatusAndBothStreamsOfAFailingProgram() throws {
        let outcome = try Subprocess.capture(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout: 60)
        XCTAssertEqual(outcome.status, 3)
        XCTAssertEqual(outcome.standardOutput, "out\n")
        XCTAssertEqual(outcome.standardError, "err\n")
        XCTAssertFalse(outcome.didTimeOut)
    }

    func testEnvironmentVariablesAreAddedToThisProcesssEnvironment() throws {
        let script = #"printf '%s|%s' "$MNIST_SUBPROCESS_TEST" "${PATH:+inherited}""#
        let outcome = try Subprocess.capture(
            ["sh", "-c", script], environment: ["MNIST_SUBPROCESS_TEST": "a b"], timeout: 60)
        XCTAssertEqual(outcome.standardOutput, "a b|inherited", outcome.standardError)
        XCTAssertEqual(
            try Subprocess.run(["sh", "-c", script], environment: ["MNIST_SUBPROCESS_TEST": "c"], timeout: 60),
            "c|inherited")
    }

    func testAnOverdueProgramIsStoppedAndWhatItWroteIsKept() throws {
        let outcome = try Subprocess.capture(["sh", "-c", "echo started; exec sleep 60"], timeout: 0.5)
        XCTAssertTrue(outcome.didTimeOut)
        XCTAssertEqual(outcome.status, SIGTERM)
        XCTAssertEqual(outcome.standardOutput, "started\n")
        XCTAssertThrowsError(try Subprocess.run(["sleep", "60"], timeout: 1)) { error in
            XCTAssertTrue("\(error)".contains("took longer than 1 s and was stopped"), "\(error)")
        }
    }

    func testRunThrowsWithTheLastLinesOfStandardErrorForANonZeroExit() {
        XCTAssertThrowsError(try Subprocess.run(["sh", "-c", "echo one >&2; echo two >&2; exit 2"], timeout: 60)) {
            error in
            XCTAssertEqual("\(error)", "`sh -c echo one >&2; echo two >&2; exit 2` failed (exit 2): one / two")
        }
    }
}
