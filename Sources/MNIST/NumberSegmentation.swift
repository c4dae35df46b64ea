// A handwritten number into its digits, pure functions of the preprocessor's ink map: the ink's
// regions are grouped into digits left to right (pieces of one broken digit merged), and a group can be
// cut into touching digits. Each digit is then framed like a single digit (`MNISTPreprocessor.frame`);
// how many digits a group holds is judged by what the network reads (Training's `NumberReader`).
// Deliberately left out: several rows of digits, decimal points and signs.
import Foundation

/// One digit of a number: the ink regions it is made of, and the columns it takes when it was cut
/// out of a region it shares with its neighbour.
public struct DigitSegment: Sendable, Equatable {
    /// Labels of its regions in the `InkMap`.
    public var regions: Set<Int32>
    /// The source columns it takes: the regions' full width, or a cut of them.
    public var columns: Range<Int>
    /// Its ink's bounding box in the source image (before a cut is trimmed to its ink).
    public var box: PixelRectangle
}

public enum NumberSegmentation {
    /// Above this many separate marks an image is not read as a number (`segment` returns none).
    public static let maximumRegions = 60

    /// The digits of the number in `map`, left to right.
    ///
    /// The number's height is that of its tallest region. Regions are grouped: two overlap when one
    /// spans at least half of the other's width, and are one digit when one of them is short (under
    /// 60% of the number's height, such as the bar of a 5 drawn apart) or they hardly share rows (a
    /// piece above another); a short piece alone joins its nearest neighbour if that is close (a third
    /// of the height), and is dropped if it is also small (a dot). Touching digits stay one group
    /// here (see `split`).
    public static func segment(_ map: InkMap) -> [DigitSegment] {
        // Grouping compares regions pairwise until nothing merges: bounded, so that an image of noise
        // with thousands of separate marks (an upload, say) costs no more than a number does.
        guard map.regions.count <= maximumRegions else { return [] }
        guard let tallest = map.regions.map(\.box.height).max(), tallest > 0 else { return [] }
        let height = Double(tallest)
        var groups = map.regions.map { region in
            DigitSegment(
                regions: [region.label], columns: region.box.x..<(region.box.x + region.box.width), box: region.box)
        }
        func short(_ group: DigitSegment) -> Bool { Double(group.box.height) < 0.6 * height }
        // Pieces of one digit: merge until nothing changes.
        var merged = true
        while merged {
            merged = false
            search: for i in groups.indices {
                for j in groups.indices where j > i {
                    let a = groups[i].box, b = groups[j].box
                    let overlap = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
                    let rows = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
                    guard Double(overlap) >= 0.5 * Double(min(a.width, b.width)) else { continue }
                    if short(groups[i]) || short(groups[j]) || Double(rows) < 0.3 * Double(min(a.height, b.height)) {
                        groups[i] = union(groups[i], groups[j])
                        groups.remove(at: j)
                        merged = true
                        break search
                    }
                }
            }
        }
        // Short pieces standing alone: join the nearest neighbour, or go if small.
        groups.sort { $0.box.x < $1.box.x }
        var index = 0
        while index < groups.count && groups.count > 1 {
            guard short(groups[index]) else {
                index += 1
                continue
            }
            let gaps = groups.indices.filter { $0 != index }.map { other -> (Int, Int) in
                let a = groups[index].box, b = groups[other].box
                return (other, max(b.x - (a.x + a.width), a.x - (b.x + b.width), 0))
            }
            guard let nearest = gaps.min(by: { $0.1 < $1.1 }) else { break }
            if Double(nearest.1) <= height / 3 {
                groups[nearest.0] = union(groups[nearest.0], groups[index])
                groups.remove(at: index)
            } else if Double(groups[index].box.height) < 0.35 * height {
                groups.remove(at: index)
            } else {
                index += 1
            }
        }
        return groups.sorted { $0.box.x < $1.box.x }
    }

    /// `group` cut into `count` digits side by side, each cut at the cheapest column within 30% of a
    /// digit's width of where an even split would put it (ties: nearest that place): little ink, and
    /// deep in the valleys that the digits' round tops and bottoms leave between them. Touching
    /// digits share a region; which count is right is for the reader to judge (`NumberReader`).
    public static func split(_ map: InkMap, _ group: DigitSegment, into count: Int) -> [DigitSegment] {
        guard count > 1, group.box.width >= 2 * count else { return [group] }
        let width = Double(group.box.width)
        // Each column's cost to cut through: its ink (relative to the group's most), less how deep
        // the valleys between the digits' tops and bottoms reach there (relative to the height).
        let profile = columnInk(map, group)
        let (tops, bottoms) = contours(map, group)
        let most = max(profile.max() ?? 1, 1e-6)
        let cost = profile.indices.map { column -> Float in
            profile[column] / most - Float(tops[column] + bottoms[column]) / Float(group.box.height)
        }
        var cuts: [Int] = []
        for cut in 1..<count {
            let expected = Double(group.box.x) + width * Double(cut) / Double(count)
            let reach = width / Double(count) * 0.3
            let low = max((cuts.last ?? group.box.x) + 1, Int((expected - reach).rounded()))
            let high = min(group.box.x + group.box.width - 1, Int((expected + reach).rounded()))
            guard low < high else { return [group] }
            // The cheapest column; among equals, the one nearest the expected cut.
            let best =
                (low..<high).min { a, b in
                    let costA = cost[a - group.box.x], costB = cost[b - group.box.x]
                    return costA != costB ? costA < costB : abs(Double(a) - expected) < abs(Double(b) - expected)
                } ?? low
            cuts.append(best)
        }
        let edges = [group.box.x] + cuts + [group.box.x + group.box.width]
        return (0..<(edges.count - 1)).map { piece in
            var part = group
            part.columns = edges[piece]..<edges[piece + 1]
            part.box = PixelRectangle(
                x: edges[piece], y: group.box.y, width: edges[piece + 1] - edges[piece], height: group.box.height)
            return part
        }
    }

    /// Two groups as one.
    static func union(_ a: DigitSegment, _ b: DigitSegment) -> DigitSegment {
        let left = min(a.box.x, b.box.x), top = min(a.box.y, b.box.y)
        let right = max(a.box.x + a.box.width, b.box.x + b.box.width)
        let bottom = max(a.box.y + a.box.height, b.box.y + b.box.height)
        return DigitSegment(
            regions: a.regions.union(b.regions), columns: left..<right,
            box: PixelRectangle(x: left, y: top, width: right - left, height: bottom - top))
    }

    /// For each column of the group: how far below the group's top its first ink is, and how far
    /// above the bottom its last (the whole height for a column without ink).
    static func contours(_ map: InkMap, _ group: DigitSegment) -> (tops: [Int], bottoms: [Int]) {
        var tops = [Int](repeating: group.box.height, count: group.box.width)
        var bottoms = [Int](repeating: group.box.height, count: group.box.width)
        for y in group.box.y..<(group.box.y + group.box.height) {
            for x in group.box.x..<(group.box.x + group.box.width)
            where group.regions.contains(map.labels[y * map.width + x]) && map.ink(at: y * map.width + x) > 0 {
                let column = x - group.box.x
                tops[column] = min(tops[column], y - group.box.y)
                bottoms[column] = min(bottoms[column], group.box.y + group.box.height - 1 - y)
            }
        }
        return (tops, bottoms)
    }

    /// The group's ink summed down each of its columns.
    static func columnInk(_ map: InkMap, _ group: DigitSegment) -> [Float] {
        var profile = [Float](repeating: 0, count: group.box.width)
        for y in group.box.y..<(group.box.y + group.box.height) {
            for x in group.box.x..<(group.box.x + group.box.width)
            where group.regions.contains(map.labels[y * map.width + x]) {
                profile[x - group.box.x] += map.ink(at: y * map.width + x)
            }
        }
        return profile
    }
}
