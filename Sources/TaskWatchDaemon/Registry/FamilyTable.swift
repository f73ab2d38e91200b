import TaskWatchWire

/// One metric name as it appears on `/metrics`, shared by every client that declares it.
struct Family {
    let name: String
    let type: SeriesType
    /// The series label names, sorted: a family keeps one set of them.
    let labelNames: [String]
    /// The help of the first declaration.
    let help: String
    /// Series currently holding this family alive.
    var seriesCount = 0
}

/// Every family by name, with the guarantees that keep the exposition valid: one type and one label
/// set per name, and no name that collides with a histogram's `_bucket`, `_sum` or `_count` lines or
/// with a counter's OpenMetrics family name.
struct FamilyTable {
    private(set) var families: [Family?] = []
    private var freeIndices: [Int] = []
    private var indexByName: [String: Int] = [:]
    /// Names a family produces besides its own (`x_bucket`, `x_sum`, `x_count` of a histogram `x`;
    /// `x` of a counter `x_total`).
    private var derivedNames: [String: Int] = [:]
    /// Bytes of the help texts of every family, which the overall byte budget counts.
    private(set) var helpBytes = 0

    /// Finds or creates the family for a declaration, or says why it cannot be admitted.
    mutating func admit(
        name: String,
        type: SeriesType,
        labelNames: [String],
        help: String
    ) -> Result<Int, SeriesRejection> {
        // Before any family exists: a name the client library's series use keeps the contract's type
        // and labels even when another client declares it first.
        guard ContractSeries.admits(name: name, type: type, labelNames: labelNames) else { return .failure(.conflict) }
        if let index = indexByName[name] {
            guard let family = families[index], family.type == type, family.labelNames == labelNames else {
                return .failure(.conflict)
            }
            return .success(index)
        }
        let derived = type.derivedNames(of: name)
        if derivedNames[name] != nil || derived.contains(where: { indexByName[$0] != nil || derivedNames[$0] != nil }) {
            return .failure(.conflict)
        }
        let family = Family(name: name, type: type, labelNames: labelNames, help: help)
        helpBytes += help.utf8.count
        let index: Int
        if let reused = freeIndices.popLast() {
            index = reused
            families[index] = family
        } else {
            index = families.count
            families.append(family)
        }
        indexByName[name] = index
        for derivedName in derived { derivedNames[derivedName] = index }
        return .success(index)
    }

    /// Whether a family of this name exists.
    func contains(_ name: String) -> Bool { indexByName[name] != nil }

    mutating func retain(_ index: Int, count: Int = 1) {
        families[index]?.seriesCount += count
    }

    /// Drops `count` series from a family and forgets the family when none are left; returns it then.
    @discardableResult
    mutating func release(_ index: Int, count: Int) -> Family? {
        guard var family = families[index] else { return nil }
        family.seriesCount -= count
        if family.seriesCount > 0 {
            families[index] = family
            return nil
        }
        families[index] = nil
        helpBytes -= family.help.utf8.count
        freeIndices.append(index)
        indexByName[family.name] = nil
        for derivedName in family.type.derivedNames(of: family.name) { derivedNames[derivedName] = nil }
        return family
    }
}
