// A strict reader of Prometheus's text exposition format (version 0.0.4), written from the format's
// description, to check what /metrics serves: line syntax, names, label escaping, TYPE and HELP before
// and at most once per family, a family's lines together, counters not negative, and histograms whose
// buckets are cumulative and end in le="+Inf" equal to _count.
import Foundation

struct PrometheusSample: Equatable {
    let name: String
    let labels: [String: String]
    let value: Double
}

struct PrometheusFormatError: Error, CustomStringConvertible {
    let line: Int
    let reason: String
    var description: String { "line \(line): \(reason)" }
}

enum PrometheusText {
    static func parse(_ text: String) throws -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        var types: [String: String] = [:]
        var helps: Set<String> = []
        var finished: Set<String> = []  // families whose lines have ended
        var current: String?
        guard text.isEmpty || text.hasSuffix("\n") else {
            throw PrometheusFormatError(line: 0, reason: "no final newline")
        }
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            func fail(_ reason: String) -> PrometheusFormatError { PrometheusFormatError(line: number, reason: reason) }
            func enter(_ family: String) throws {
                if current != family {
                    if let current { finished.insert(current) }
                    guard !finished.contains(family) else { throw fail("family \(family) continues after others") }
                    current = family
                }
            }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE" else { continue }
                let name = String(parts[2])
                guard isMetricName(name) else { throw fail("bad metric name \(name)") }
                try enter(name)
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3])
                    else { throw fail("bad TYPE line") }
                    guard types[name] == nil else { throw fail("second TYPE for \(name)") }
                    guard !samples.contains(where: { family(of: $0.name, types: types) == name }) else {
                        throw fail("TYPE for \(name) after its samples")
                    }
                    types[name] = String(parts[3])
                } else {
                    guard helps.insert(name).inserted else { throw fail("second HELP for \(name)") }
                }
                continue
            }
            let sample = try parseSample(Substring(line), fail: fail)
            try enter(family(of: sample.name, types: types))
            if types[sample.name] == "counter", !(sample.value >= 0) {
                throw fail("counter \(sample.name) is \(sample.value)")
            }
            samples.append(sample)
        }
        try checkHistograms(samples, types: types)
        return samples
    }

    /// The family a sample belongs to: a histogram's _bucket, _sum and _count belong to the histogram.
    static func family(of name: String, types: [String: String]) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" || types[base] == "summary" { return base }
        }
        return name
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !(first >= "0" && first <= "9") else { return false }
        return name.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == ":"
        }
    }

    static func parseSample(_ line: Substring, fail: (String) -> PrometheusFormatError) throws -> PrometheusSample {
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        guard isMetricName(name) else { throw fail("bad metric name '\(name)'") }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { throw fail("label without =") }
                let label = String(rest[..<equals])
                guard isMetricName(label), !label.contains(":") else { throw fail("bad label name '\(label)'") }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { throw fail("label value not quoted") }
                rest = rest.dropFirst()
                var value = ""
                while true {
                    guard let character = rest.first else { throw fail("unterminated label value") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        guard let escaped = rest.first, "\\\"n".contains(escaped) else { throw fail("bad escape") }
                        value.append(escaped == "n" ? "\n" : escaped)
                        rest = rest.dropFirst()
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw fail("label \(label) twice") }
                if rest.first == "," {
                    rest = rest.dropFirst()
                } else if rest.first != "}" {
                    throw fail("expected , or }")
                }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw fail("no space before the value") }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard (1...2).contains(fields.count) else { throw fail("expected a value and an optional timestamp") }
        let valueText = String(fields[0])
        let value: Double
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(valueText), parsed.isFinite else { throw fail("bad value '\(valueText)'") }
            value = parsed
        }
        if fields.count == 2, Int64(fields[1]) == nil { throw fail("bad timestamp") }
        return PrometheusSample(name: name, labels: labels, value: value)
    }

    static func checkHistograms(_ samples: [PrometheusSample], types: [String: String]) throws {
        for (name, type) in types where type == "histogram" {
            var series: [[String: String]: [(Double, Double)]] = [:]
            for sample in samples where sample.name == name + "_bucket" {
                guard let le = sample.labels["le"] else {
                    throw PrometheusFormatError(line: 0, reason: "bucket without le")
                }
                let bound = le == "+Inf" ? Double.infinity : Double(le)
                guard let bound else { throw PrometheusFormatError(line: 0, reason: "bad le \(le)") }
                var key = sample.labels
                key["le"] = nil
                series[key, default: []].append((bound, sample.value))
            }
            for (labels, buckets) in series {
                let sorted = buckets.sorted { $0.0 < $1.0 }
                guard zip(sorted, sorted.dropFirst()).allSatisfy({ $0.1 <= $1.1 }) else {
                    throw PrometheusFormatError(line: 0, reason: "\(name) buckets not cumulative")
                }
                guard let last = sorted.last, last.0 == .infinity else {
                    throw PrometheusFormatError(line: 0, reason: "\(name) has no le=\"+Inf\" bucket")
                }
                let count = samples.first { $0.name == name + "_count" && $0.labels == labels }
                guard count?.value == last.1 else {
                    throw PrometheusFormatError(line: 0, reason: "\(name)_count is not the +Inf bucket")
                }
                guard samples.contains(where: { $0.name == name + "_sum" && $0.labels == labels }) else {
                    throw PrometheusFormatError(line: 0, reason: "\(name) has no _sum")
                }
            }
        }
    }
}
