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
    /// The cuts it was taken from its neighbours with, if any: its ink is right of `left` and left of
    /// `right`.
    public var left: CutPath? = nil
    public var right: CutPath? = nil
}

/// A cut between touching digits from the top of their ink to the bottom: for each row, the first
/// column right of the cut. Rows above the cut use its first row's column, rows below its last's.
public struct CutPath: Sendable, Equatable {
    public var top: Int
    public var columns: [Int]
    /// How many of its pixels are ink, and how many separate strokes (runs of ink) it crosses.
    public var inkCrossed = 0
    public var strokesCrossed = 0
    /// The source column where the cut crosses row `y`.
    public func column(atRow y: Int) -> Int { columns[min(max(y - top, 0), columns.count - 1)] }
    /// The cut's mean column.
    public var middle: Double { Double(columns.reduce(0, +)) / Double(max(1, columns.count)) }
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
    /// here (see `cuts`).
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

    /// Where `group` might be cut into touching digits: the cuts (`cutPath`) that start every third of
    /// `spacing` columns, at least `spacing` from the group's edges; of those, up to `limit` that cross
    /// the least ink, their middles at least half `spacing` apart; left to right. Which of them are
    /// cuts between digits is for the reader to judge.
    public static func cuts(_ map: InkMap, _ group: DigitSegment, spacing: Int, reach: Int, limit: Int) -> [CutPath] {
        let spacing = max(1, spacing)
        guard group.box.width > 2 * spacing, limit > 0 else { return [] }
        let starts = stride(
            from: group.box.x + spacing, to: group.box.x + group.box.width - spacing, by: max(1, spacing / 3))
        // The group's ink by column, cumulative from the left: a cut must leave a tenth on each side.
        var inkBefore = [Int](repeating: 0, count: group.box.width + 1)
        let isInk = inkTest(map, group)
        for (column, ink) in inkColumns(map, group, isInk: isInk).enumerated() {
            inkBefore[column + 1] = inkBefore[column] + ink
        }
        let total = inkBefore[group.box.width]
        let tried = starts.compactMap { start -> (path: CutPath, drift: Double)? in
            let cut = cutPath(map, group, near: start, reach: reach, isInk: isInk)
            let left = inkBefore[min(max(0, Int(cut.middle.rounded()) - group.box.x), group.box.width)]
            guard min(left, total - left) * 10 >= total else { return nil }
            return (cut, abs(cut.middle - Double(start)))
        }
        var chosen: [CutPath] = []
        for cut in tried.sorted(by: {
            $0.path.inkCrossed != $1.path.inkCrossed ? $0.path.inkCrossed < $1.path.inkCrossed : $0.drift < $1.drift
        }) where chosen.allSatisfy({ abs($0.middle - cut.path.middle) >= Double(spacing) / 2 }) {
            chosen.append(cut.path)
            if chosen.count == limit { break }
        }
        return chosen.sorted { $0.middle < $1.middle }
    }

    /// The cut through `group` near `column` that crosses the least ink: a path from the group's top row
    /// to its bottom row, moving at most one column from row to row and staying within `reach` columns
    /// of `column`, so that it can pass between digits that overlap (one's stroke reaching over the
    /// other's). The cut records how much ink it crosses. Among cuts crossing equal ink, straighter
    /// ones nearer `column` win.
    public static func cutPath(_ map: InkMap, _ group: DigitSegment, near column: Int, reach: Int) -> CutPath {
        cutPath(map, group, near: column, reach: reach, isInk: inkTest(map, group))
    }

    static func cutPath(
        _ map: InkMap, _ group: DigitSegment, near column: Int, reach: Int, isInk: (Int) -> Bool
    ) -> CutPath {
        let low = max(group.box.x + 1, column - reach), high = min(group.box.x + group.box.width - 1, column + reach)
        guard low <= high else {
            return CutPath(top: group.box.y, columns: [Int](repeating: column, count: group.box.height))
        }
        let band = high - low + 1, rows = group.box.height
        func inked(_ x: Int, _ y: Int) -> Bool { isInk(y * map.width + x) }
        // Costs: an ink pixel 1, a sideways step 0.01, and 0.001 per column away from `column`.
        var cost = (0..<band).map { offset -> Float in
            (inked(low + offset, group.box.y) ? 1 : 0) + 0.001 * Float(abs(low + offset - column))
        }
        var from = [Int8](repeating: 0, count: band * rows)
        var next = cost
        for row in 1..<max(1, rows) {
            for offset in 0..<band {
                var best = cost[offset], step: Int8 = 0
                if offset > 0, cost[offset - 1] + 0.01 < best { (best, step) = (cost[offset - 1] + 0.01, -1) }
                if offset + 1 < band, cost[offset + 1] + 0.01 < best { (best, step) = (cost[offset + 1] + 0.01, 1) }
                from[row * band + offset] = step
                next[offset] =
                    best + (inked(low + offset, group.box.y + row) ? 1 : 0) + 0.001 * Float(abs(low + offset - column))
            }
            swap(&cost, &next)
        }
        var offset = cost.indices.min { cost[$0] < cost[$1] } ?? 0
        var columns = [Int](repeating: 0, count: rows)
        var crossed = 0, strokes = 0, previous = false
        for row in stride(from: rows - 1, through: 0, by: -1) {
            columns[row] = low + offset
            let ink = inked(low + offset, group.box.y + row)
            if ink { crossed += 1 }
            if ink && !previous { strokes += 1 }
            previous = ink
            offset += Int(from[row * band + offset])
        }
        return CutPath(top: group.box.y, columns: columns, inkCrossed: crossed, strokesCrossed: strokes)
    }

    /// `group` cut along the given paths (left to right, inside the group) into pieces side by side.
    public static func pieces(_ group: DigitSegment, cutAlong paths: [CutPath]) -> [DigitSegment] {
        let cuts: [CutPath?] = [nil] + paths + [nil]
        return (0..<(cuts.count - 1)).map { piece in
            var part = group
            let left = cuts[piece]?.columns.min() ?? group.box.x
            let right = cuts[piece + 1]?.columns.max() ?? (group.box.x + group.box.width)
            part.columns = left..<max(left, right)
            part.box = PixelRectangle(x: left, y: group.box.y, width: max(0, right - left), height: group.box.height)
            part.left = cuts[piece]
            part.right = cuts[piece + 1]
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

    /// How many of the group's pixels in each of its columns are its ink.
    static func inkColumns(_ map: InkMap, _ group: DigitSegment, isInk: (Int) -> Bool) -> [Int] {
        var counts = [Int](repeating: 0, count: group.box.width)
        for y in group.box.y..<(group.box.y + group.box.height) {
            for x in group.box.x..<(group.box.x + group.box.width) where isInk(y * map.width + x) {
                counts[x - group.box.x] += 1
            }
        }
        return counts
    }

    /// Whether the pixel at an index of `map` is ink of `group`'s regions.
    static func inkTest(_ map: InkMap, _ group: DigitSegment) -> (Int) -> Bool {
        var selected = [Bool](repeating: false, count: Int(map.regions.map(\.label).max() ?? 0) + 1)
        for label in group.regions where Int(label) < selected.count { selected[Int(label)] = true }
        return { index in
            let label = Int(map.labels[index])
            return label < selected.count && selected[label] && map.ink(at: index) > 0
        }
    }
}
