// LocalCluster with /bin/sh children standing in for workers: stderr lines come back prefixed, exit
// statuses are reported, terminate() escalates from SIGTERM to SIGKILL, and SignalWatch turns SIGINT
// into a callback. Timeouts are safety nets only.
import Foundation
import XCTest

@testable import Host

#if canImport(Glibc)
    import Glibc
#endif

final class LocalClusterTests: XCTestCase {
    let shell = URL(fileURLWithPath: "/bin/sh")

    // @unchecked Sendable: `stored` is read and written under `lock`.
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [String] = []
        func append(_ line: String) {
            lock.lock()
            stored.append(line)
            lock.unlock()
        }
        var all: [String] {
            lock.lock()
            defer { lock.unlock() }
            return stored
        }
    }

    func testForwardsPrefixedLinesAndReportsExitStatuses() throws {
        let lines = Lines()
        let cluster = LocalCluster(
            executable: shell, workerCount: 2,
            arguments: { ["-c", "printf 'one\\ntwo' >&2; exit $((40 + $0))", "\($0)"] }, onLine: { lines.append($0) })
        try cluster.start()
        XCTAssertEqual(cluster.waitForExit(timeout: 10), [40, 41])
        let deadline = Date().addingTimeInterval(5)  // Lines may trail the exit slightly.
        while lines.all.count < 4 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(
            Set(lines.all), ["[worker 0] one", "[worker 0] two", "[worker 1] one", "[worker 1] two"])
    }

    func testTerminateEscalatesToKillForAChildIgnoringSIGTERM() throws {
        let lines = Lines()
        let cluster = LocalCluster(
            executable: shell, workerCount: 2,
            arguments: { index in
                index == 0
                    ? ["-c", "echo polite >&2; exec sleep 30"]
                    : ["-c", "trap '' TERM; echo stubborn >&2; while :; do sleep 0.05; done"]
            }, onLine: { lines.append($0) })
        try cluster.start()
        let deadline = Date().addingTimeInterval(5)
        while lines.all.count < 2 && Date() < deadline { usleep(10_000) }  // Both have set up.
        XCTAssertEqual(cluster.runningCount, 2)
        cluster.terminate(gracePeriod: 0.3)
        XCTAssertEqual(cluster.runningCount, 0)
        XCTAssertEqual(cluster.waitForExit(timeout: 5), [SIGTERM, SIGKILL])
    }

    func testStartFailureNamesTheExecutable() {
        let cluster = LocalCluster(
            executable: URL(fileURLWithPath: "/nonexistent/mnist"), workerCount: 2, arguments: { _ in [] })
        XCTAssertThrowsError(try cluster.start()) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/mnist"), "\(error)")
        }
    }

    func testSignalWatchTurnsSIGINTIntoACallback() {
        let received = DispatchSemaphore(value: 0)
        let watch = SignalWatch(signals: [SIGINT]) { number in
            if number == SIGINT { received.signal() }
        }
        defer { watch.cancel() }
        for round in 0..<5 {  // Process-directed, as Ctrl-C is.
            kill(getpid(), SIGINT)
            XCTAssertEqual(received.wait(timeout: .now() + 10), .success, "round \(round)")
        }
    }
}
