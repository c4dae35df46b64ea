// `--report FILE`: the run's page as one self-contained HTML file, written when the run ends.
import Foundation
import Host
import TestSupport
import XCTest

final class ReportCommandTests: XCTestCase {
    func testTheReportHoldsTheFinalStateAndEveryImageAndNeedsNoServer() throws {
        let data = try TinyDataset.folder("report", seed: 3)
        let report = data.file("run.html")
        let result = try Subprocess.capture(
            [
                Products.mnist.path, "train", "--data", data.url.path, "--epochs", "2", "--batch-size", "64",
                "--output", data.file("model.safetensors").path, "--report", report.path,
            ], timeout: 300)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardError.contains("report written to \(report.path)"), result.standardError)
        let html = try String(contentsOf: report, encoding: .utf8)
        // Self-contained: no file of the server is asked for.
        for reference in ["src=\"dashboard.js\"", "href=\"style.css\"", "src=\"draw.js\"", "EventSource(\"events\")\n"]
        {
            XCTAssertFalse(html.contains(reference), reference)
        }
        func embedded(_ name: String) throws -> Any {
            let start = try XCTUnwrap(html.range(of: "window.\(name) = "))
            let end = try XCTUnwrap(html[start.upperBound...].range(of: ";\n"))
            let json = html[start.upperBound..<end.lowerBound].replacingOccurrences(of: "<\\/", with: "</")
            return try JSONSerialization.jsonObject(with: Data(json.utf8))
        }
        let state = try XCTUnwrap(try embedded("reportState") as? [String: Any])
        XCTAssertEqual(state["status"] as? String, "finished")
        let run = try XCTUnwrap(state["run"] as? [String: Any])
        let steps = try XCTUnwrap(run["totalSteps"] as? Int)
        XCTAssertEqual(steps, 2 * 10, "640 images in batches of 64, two epochs")
        let curves = try XCTUnwrap(state["curves"] as? [String: [[Double]]])
        XCTAssertEqual(curves["loss"]?.count, steps)
        XCTAssertEqual(curves["testAccuracy"]?.map { $0[0] }, [1, 2])
        let evaluation = try XCTUnwrap(state["evaluation"] as? [String: Any])
        XCTAssertEqual((evaluation["confusion"] as? [[Int]])?.joined().reduce(0, +), 160)
        let mistakes = try XCTUnwrap(evaluation["mistakes"] as? [[String: Any]])
        XCTAssertGreaterThan(mistakes.count, 0, "random images are mostly misread")
        let images = try XCTUnwrap(try embedded("reportImages") as? [String: String])
        XCTAssertEqual(Set(images.keys), Set(mistakes.compactMap { ($0["index"] as? Int).map(String.init) }))
        XCTAssertTrue(images.values.allSatisfy { $0.hasPrefix("data:image/png;base64,") })
    }

    func testAReportInAFolderThatIsNotThereIsRefusedBeforeTraining() throws {
        let result = try Subprocess.capture(
            [Products.mnist.path, "train", "--report", "/no/such/folder/run.html"], timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.standardError.contains("--report"), result.standardError)
        XCTAssertTrue(result.standardError.contains("/no/such/folder"), result.standardError)
    }
}
