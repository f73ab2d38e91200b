import TaskWatchWire

/// The series of one client, stored column-wise so that a million series cost about a hundred bytes
/// each and a scrape can take the whole table by reference (copy-on-write) in O(1).
struct SeriesTable {
    /// Marks a series declared but not yet given a value. NaN is refused from the wire, so no client
    /// value can ever carry this bit pattern.
    static let unset = Double(bitPattern: 0x7FF8_DEAD_0000_0001)

    /// The rendered, escaped series labels of every series back to back (`task="default"`).
    private(set) var labelArena: [UInt8] = []
    /// Where each series' labels end in `labelArena`; they start where the previous series' end.
    private(set) var labelEnds: [UInt32] = []
    /// Family index of each series.
    private(set) var family: [UInt32] = []
    /// Type of each series, kept beside the family so the hot path needs no family lookup.
    private(set) var types: [SeriesType] = []
    /// Counter or gauge value, or a histogram's sum.
    var values: [Double] = []
    /// Histogram storage, only for series that are histograms.
    private(set) var histograms: [Int32: HistogramSlot] = [:]
    var bucketCounts: [UInt64] = []
    private(set) var boundSets: [BoundSet] = []
    private var boundSetIndex: [[Double]: Int] = [:]

    /// Series indices grouped by family, rebuilt after declarations change.
    private(set) var order: [Int32] = []
    private(set) var familyRanges: [UInt32: Range<Int>] = [:]
    private var orderIsStale = false

    var count: Int { family.count }

    /// Appends a series and returns its index.
    mutating func append(family familyIndex: Int, type: SeriesType, labelText: [UInt8], bounds: [Double]?) -> Int32 {
        let index = Int32(family.count)
        types.append(type)
        labelArena += labelText
        labelEnds.append(UInt32(labelArena.count))
        family.append(UInt32(familyIndex))
        values.append(Self.unset)
        if let bounds {
            let set: Int
            if let existing = boundSetIndex[bounds] {
                set = existing
            } else {
                set = boundSets.count
                boundSets.append(BoundSet(bounds: bounds))
                boundSetIndex[bounds] = set
            }
            histograms[index] = HistogramSlot(boundSet: set, offset: bucketCounts.count)
            bucketCounts += repeatElement(0, count: bounds.count + 1)
        }
        orderIsStale = true
        return index
    }

    /// A table of the series not in `dropped`, in the same order, with their values, and the new index
    /// of every old one (-1 for those dropped).
    func compacted(dropping dropped: Set<Int32>) -> (table: SeriesTable, newIndex: [Int32]) {
        var table = SeriesTable()
        var newIndex = [Int32](repeating: -1, count: count)
        for index in 0..<count where !dropped.contains(Int32(index)) {
            let slot = histograms[Int32(index)]
            let bounds = slot.map { boundSets[$0.boundSet].bounds }
            let moved = table.append(
                family: Int(family[index]), type: types[index], labelText: Array(labelArena[labels(of: index)]),
                bounds: bounds)
            table.values[Int(moved)] = values[index]
            if let slot, let bounds, let movedSlot = table.histograms[moved] {
                for bucket in 0...bounds.count {
                    table.bucketCounts[movedSlot.offset + bucket] = bucketCounts[slot.offset + bucket]
                }
            }
            newIndex[index] = moved
        }
        return (table, newIndex)
    }

    /// The labels of series `index` as rendered bytes.
    func labels(of index: Int) -> Range<Int> {
        let start = index == 0 ? 0 : Int(labelEnds[index - 1])
        return start..<Int(labelEnds[index])
    }

    mutating func refreshOrder() {
        guard orderIsStale else { return }
        orderIsStale = false
        var byFamily: [UInt32: [Int32]] = [:]
        for (index, familyIndex) in family.enumerated() { byFamily[familyIndex, default: []].append(Int32(index)) }
        order.removeAll(keepingCapacity: true)
        familyRanges.removeAll(keepingCapacity: true)
        for (familyIndex, members) in byFamily {
            familyRanges[familyIndex] = order.count..<order.count + members.count
            order += members
        }
    }
}

/// Where a histogram's bucket counts live in `SeriesTable.bucketCounts`.
struct HistogramSlot {
    let boundSet: Int
    let offset: Int
}

/// A set of histogram bounds and their rendered `le` values, shared by the series that use it.
struct BoundSet {
    let bounds: [Double]
    /// `le="…"` text for each bound and for `+Inf`.
    let leTexts: [[UInt8]]

    init(bounds: [Double]) {
        self.bounds = bounds
        leTexts = bounds.map { Array("le=\"\(BucketBound.text($0))\"".utf8) } + [Array("le=\"+Inf\"".utf8)]
    }
}
