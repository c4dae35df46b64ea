// The exposition-format checker must itself be able to fail: broken texts are refused, a good one read.
import XCTest

final class PrometheusTextTests: XCTestCase {
    func testAWellFormedExpositionIsRead() throws {
        let text = """
            # HELP a_total Things.
            # TYPE a_total counter
            a_total{kind="x\\"y\\\\z\\n"} 3
            # TYPE h histogram
            h_bucket{le="0.5"} 1
            h_bucket{le="+Inf"} 2
            h_sum 0.75
            h_count 2

            """
        let samples = try PrometheusText.parse(text)
        XCTAssertEqual(samples.count, 5)
        XCTAssertEqual(samples[0], PrometheusSample(name: "a_total", labels: ["kind": "x\"y\\z\n"], value: 3))
    }

    func testBrokenExpositionsAreRefused() {
        let broken = [
            "a 1",  // no final newline
            "1a 1\n",  // name starts with a digit
            "a{b=\"c} 1\n",  // unterminated label value
            "a{b=c} 1\n",  // unquoted label value
            "a{b=\"\\x\"} 1\n",  // bad escape
            "a one\n",  // not a number
            "a 1 2 3\n",  // too many fields
            "# TYPE a counter\na -1\n",  // negative counter
            "# TYPE a counter\n# TYPE a gauge\na 1\n",  // two TYPE lines
            "a 1\n# TYPE a counter\n",  // TYPE after samples
            "a 1\nb 1\na 2\n",  // a family split
            // Buckets not cumulative.
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",  // no +Inf
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  // count differs
            "# TYPE a summer\na 1\n",  // unknown type
        ]
        for text in broken {
            XCTAssertThrowsError(try PrometheusText.parse(text), text)
        }
    }
}
