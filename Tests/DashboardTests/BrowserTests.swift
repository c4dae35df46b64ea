// The draw-a-digit page in a real browser: headless Chromium (Debian's chromium and chromium-driver)
// driven by Selenium (Tests/Browser/draw_digits.py) draws a 1 and a 7 with pointer events on the page of
// a real `mnist serve`, whose model this test trains on the real MNIST; the page must answer the digit
// drawn. Screenshots are kept under .build/screenshots/. Cluster/test.sh installs the browser and
// Selenium; elsewhere the test is skipped when they are missing, in CI it fails.
import ConvNet
import Foundation
import Host
import TestSupport
import XCTest

/// Where the browser test's tools are: Chromium, its driver, and Selenium in .build/ (Cluster/test.sh).
enum BrowserTools {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let selenium = packageRoot.appendingPathComponent(".build/selenium-4.38.0")
    static let script = packageRoot.appendingPathComponent("Tests/Browser/draw_digits.py")
    static let dashboardScript = packageRoot.appendingPathComponent("Tests/Browser/dashboard.py")
    static let screenshots = packageRoot.appendingPathComponent(".build/screenshots")

    /// What is missing to run a browser test, or nil.
    static var missing: String? {
        let absent = [
            ("/usr/bin/chromium", "Debian's chromium"), ("/usr/bin/chromedriver", "Debian's chromium-driver"),
            (selenium.appendingPathComponent("selenium").path, "Selenium in \(selenium.path)"),
        ].filter { !FileManager.default.fileExists(atPath: $0.0) }.map(\.1)
        return absent.isEmpty ? nil : absent.joined(separator: ", ") + " (Cluster/test.sh installs them)"
    }

    /// Skips outside CI when the tools or the data are missing; in CI their absence is a failure.
    static func require() throws {
        if let missing {
            if isContinuousIntegration { throw XCTSkipFailure(reason: "browser tools missing: \(missing)") }
            throw XCTSkip("browser tools missing: \(missing)")
        }
        do {
            _ = try requireRealMNIST()
        } catch let missing as RealMNISTMissing where !isContinuousIntegration {
            throw XCTSkip("\(missing)")
        }
    }
}

/// A missing tool in CI: an error, so the test fails instead of being skipped.
struct XCTSkipFailure: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

final class BrowserTests: XCTestCase {
    func testADigitDrawnOnTheServePageIsReadAsThatDigit() throws {
        try BrowserTools.require()
        let directory = try TemporaryDirectory("browser")
        let model = directory.file("model.safetensors")
        // One epoch of the default configuration: about 99% on the test set, and enough for clear strokes.
        let training = try Subprocess.capture(
            [Products.mnist.path, "train", "--epochs", "1", "--output", model.path, "--log-format", "json"],
            timeout: 600)
        XCTAssertEqual(training.status, 0, training.standardError)

        let server = try WatchedProcess(Products.mnist, ["serve", "--model", model.path, "--bind", "0"])
        defer { server.kill(SIGKILL) }
        let line = try XCTUnwrap(server.waitForLine(containing: "serving", seconds: 60), server.output)
        let url = try XCTUnwrap(line.split(separator: " ").first { $0.hasPrefix("http://127.0.0.1:") }, line)

        let browser = try Subprocess.capture(
            ["python3", BrowserTools.script.path, String(url), BrowserTools.screenshots.path],
            environment: ["PYTHONPATH": BrowserTools.selenium.path], timeout: 300)
        XCTAssertEqual(browser.status, 0, browser.standardError)
        let answers = try browser.standardOutput.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(answers.count, 2, browser.standardOutput + browser.standardError)
        for answer in answers {
            let drawn = try XCTUnwrap(answer["drawn"] as? Int)
            XCTAssertEqual(answer["answer"] as? String, "\(drawn)", "the page read a drawn \(drawn) as \(answer)")
            XCTAssertEqual(answer["error"] as? String, "", "\(answer)")
            let screenshot = BrowserTools.screenshots.appendingPathComponent("serve-drawn-\(drawn).png")
            XCTAssertGreaterThan(
                (try FileManager.default.attributesOfItem(atPath: screenshot.path)[.size] as? Int) ?? 0, 10_000)
        }
        server.kill(SIGTERM)
        XCTAssertTrue(server.wait(seconds: 10), server.output)
    }

    func testTheDashboardShowsALiveRunWithItsWorkersAndAnswersTheDrawBox() throws {
        try BrowserTools.require()
        let directory = try TemporaryDirectory("browser")
        let model = directory.file("model.safetensors")
        // Three epochs: the browser watches the first one and draws during the next.
        let training = try WatchedProcess(
            Products.mnist,
            [
                "train", "--workers", "2", "--epochs", "3", "--dashboard", "0", "--output", model.path, "--log-format",
                "json",
            ])
        defer { training.kill(SIGKILL) }
        let line = try XCTUnwrap(training.waitForLine(containing: "dashboard at", seconds: 120), training.output)
        let url = try XCTUnwrap(line.split(separator: " ").first { $0.hasPrefix("http://127.0.0.1:") }, line)

        let browser = try Subprocess.capture(
            ["python3", BrowserTools.dashboardScript.path, String(url), "2", BrowserTools.screenshots.path],
            environment: ["PYTHONPATH": BrowserTools.selenium.path], timeout: 600)
        XCTAssertEqual(browser.status, 0, browser.standardError + training.output)
        let report = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(browser.standardOutput.utf8)) as? [String: Any],
            browser.standardOutput)
        XCTAssertGreaterThanOrEqual(report["points"] as? Int ?? 0, 2, "\(report)")
        XCTAssertEqual(report["workers"] as? [String], ["local-0", "local-1"], "\(report)")
        // Each worker's address (over ipc libzmq says "localhost:UID:GID:PID") and its compute and
        // transfer per step, from its own timing.
        let rows = try XCTUnwrap(report["address_compute_transfer"] as? [[String]])
        XCTAssertEqual(rows.count, 2, "\(report)")
        XCTAssertTrue(rows.allSatisfy { $0[0].hasPrefix("localhost:") }, "\(report)")
        for row in rows {
            let compute = Double(row[1]) ?? -1, transfer = Double(row[2]) ?? -1
            XCTAssertTrue(compute > 0 && compute < 10_000 && transfer >= 0 && transfer < 10_000, "\(report)")
        }
        XCTAssertEqual(report["confusion_rows"] as? Int, 10, "\(report)")
        let mistakes = try XCTUnwrap(report["mistakes"] as? Int)
        XCTAssertGreaterThan(mistakes, 0, "about 1% of 10,000 after an epoch")
        XCTAssertEqual(report["mistake_images_loaded"] as? Int, mistakes, "every mistake's image loads")
        XCTAssertEqual(report["answer"] as? String, "1", "the weights of the moment read a drawn 1: \(report)")
        XCTAssertGreaterThan(report["states"] as? Int ?? 0, 2, "states keep coming over the event stream")
        for name in ["dashboard-training.png", "dashboard-evaluated.png"] {
            let screenshot = BrowserTools.screenshots.appendingPathComponent(name)
            XCTAssertGreaterThan(
                (try FileManager.default.attributesOfItem(atPath: screenshot.path)[.size] as? Int) ?? 0, 10_000, name)
        }
        // The run ends as it would without a dashboard: the model is written and the process exits 0.
        XCTAssertTrue(training.wait(seconds: 600), training.output)
        XCTAssertEqual(training.status, 0, training.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.path))
    }
}
