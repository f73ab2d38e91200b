import TaskWatchWire

extension Registry {
    func declare(
        _ declaration: SeriesDeclaration, in client: inout ClientState, state: inout State,
        warnings: inout [RefusalLine]
    ) {
        // Declared again: the same declaration changes nothing, as for a waiting one (counted again as a
        // conflict, it lost its place among the declarations kept on its name); another one takes the
        // place of the kept one.
        if let kept = client.conflicted[declaration.id] {
            if kept.declaration == declaration { return }
            Self.forgetConflicted(declaration.id, of: &client, in: &state)
        }
        let existing = client.indexByID[declaration.id]
        if existing == ClientState.pendingID, let waiting = client.pending[declaration.id] {
            // Declared again while it waits: the same declaration changes nothing, as for an admitted
            // id; another one is a duplicate, and the waiting one stays.
            if waiting.hash != SeriesIdentity.hash(declaration) {
                noteDropped(declaration, .duplicateSeries, of: client, state: &state, warnings: &warnings)
            }
            return
        }
        // A new series behind declarations that wait for room it would need waits behind them: else
        // a client retiring and declaring at a cap took every place freed before the waiting ones had
        // their turn, for as long as it kept at it.
        let result: Result<Void, SeriesRejection>
        if existing.map({ $0 < 0 }) ?? true, let ahead = waitingAhead(of: &client, state: state) {
            result = .failure(ahead)
        } else {
            result = admit(declaration, in: &client, state: &state)
        }
        guard case .failure(let reason) = result else {
            if existing == ClientState.droppedID { client.droppedIDs -= 1 }
            return
        }
        let waits = wait(declaration, refusedFor: reason, in: &client, state: &state)
        noteDropped(declaration, reason, of: client, waiting: waits, state: &state, warnings: &warnings)
        if waits {
            if existing == ClientState.droppedID { client.droppedIDs -= 1 }
            return
        }
        // Remember refused ids (boundedly) so their updates are ignored rather than refused as unknown.
        // An id retired and declared anew is marked dropped too: left marked retired, a declaration of
        // it in conflict was not kept (`keepConflicted` keeps only ids marked dropped), and never shown.
        let marker = client.indexByID[declaration.id]
        if marker == nil || marker == ClientState.retiredID, client.droppedIDs < limits.maxSeriesPerClient {
            client.indexByID[declaration.id] = ClientState.droppedID
            client.droppedIDs += 1
        }
        if reason == .conflict { keepConflicted(declaration, of: &client, in: &state) }
    }

    /// Counts and logs a declaration not admitted: once, however long it then waits.
    private func noteDropped(
        _ declaration: SeriesDeclaration, _ reason: SeriesRejection, of client: borrowing ClientState,
        waiting: Bool = false, state: inout State, warnings: inout [RefusalLine]
    ) {
        state.stats.droppedSeries[reason, default: 0] += 1
        // Named as it would be exposed, with `_total`, since that is the name that conflicts.
        let line = log?.seriesDropped(
            reason,
            name: declaration.type.exposedName(declaration.name),
            type: declaration.type, labelNames: declaration.labels.map(\.name), client: client,
            limit: limit(of: reason), waiting: waiting)
        if let line { warnings.append(line) }
    }

    /// Checks what a declaration's own name and labels must meet, whatever else the daemon holds, and
    /// returns its sorted label names.
    static func checkNames(
        _ declaration: SeriesDeclaration, shownName: String, hello: Hello?
    ) -> Result<[String], SeriesRejection> {
        guard Names.isValidMetricName(shownName) else { return .failure(.invalidName) }
        if DaemonSeries.reserves(shownName, type: declaration.type) { return .failure(.reservedName) }
        var labelNames: [String] = []
        for label in declaration.labels {
            guard Names.isValidLabelName(label.name) else { return .failure(.invalidName) }
            labelNames.append(label.name)
        }
        let constantNames = Set(["process", "pid"] + (hello?.labels.map(\.name) ?? []))
        let sortedNames = labelNames.sorted()
        if Set(sortedNames).count != sortedNames.count || sortedNames.contains(where: constantNames.contains)
            || (declaration.type == .histogram && sortedNames.contains("le"))
        {
            return .failure(.reservedLabel)
        }
        return .success(sortedNames)
    }

    func admit(
        _ declaration: SeriesDeclaration,
        in client: inout ClientState,
        state: inout State
    ) -> Result<Void, SeriesRejection> {
        // An id admitted before; one retired, dropped or waiting (tried again by `admitWaiting`) may
        // be declared anew.
        if let existing = client.indexByID[declaration.id], existing >= 0 {
            if client.declarationHashes[Int(existing)] == SeriesIdentity.hash(declaration) { return .success(()) }
            return .failure(.duplicateSeries)
        }
        // Limits first: a client flooding declarations past its cap is refused before any hashing or
        // validation, so the lock it holds per frame stays short and scrapes are not starved.
        guard client.liveCount < limits.maxSeriesPerClient else { return .failure(.clientLimit) }
        let uid = client.peer.uid
        if limits.maxSeriesPerUID > 0 {
            while state.usageByUID[uid, default: UIDUsage()].series >= limits.maxSeriesPerUID {
                guard evictGraceHeld(&state, uid: uid) else { return .failure(.uidLimit) }
            }
        }
        while state.seriesTotal >= limits.maxSeries {
            guard evictGraceHeld(&state) else { return .failure(.globalLimit) }
        }
        // Counters are exposed with the `_total` suffix both formats expect.
        let shownName = declaration.type.exposedName(declaration.name)
        // Rendered here, before the budget is checked, so that it counts what is stored: escaping can
        // double a label value (`"` becomes `\"`).
        let labelText = Escaping.labelText(declaration.labels)
        let bytes = Self.chargedBytes(
            name: shownName, labelText: labelText.count, connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        guard client.labelBytes + bytes <= limits.maxLabelBytesPerClient else { return .failure(.byteLimit) }
        // A new family's help is held once, whoever declared it, so it counts only overall.
        let help = declaration.help.isEmpty ? "Reported by a TaskWatch client without help text." : declaration.help
        let helpBytes = state.families.contains(shownName) ? 0 : help.utf8.count
        while state.labelBytes + state.families.helpBytes + helpBytes + bytes > limits.maxLabelBytes {
            guard evictGraceHeld(&state) else { return .failure(.byteLimit) }
        }
        let fullHash = SeriesIdentity.hash(declaration)
        var declaration = declaration
        declaration.name = shownName
        let sortedNames: [String]
        switch Self.checkNames(declaration, shownName: shownName, hello: client.hello) {
        case .success(let names): sortedNames = names
        case .failure(let reason): return .failure(reason)
        }
        let identity = SeriesIdentity.hash(name: declaration.name, labels: declaration.labels)
        if client.identities[identity] != nil { return .failure(.duplicateSeries) }
        let familyIndex: Int
        switch state.families.admit(name: declaration.name, type: declaration.type, labelNames: sortedNames, help: help)
        {
        case .success(let index): familyIndex = index
        case .failure(let reason): return .failure(reason)
        }
        let index = client.table.append(
            family: familyIndex,
            type: declaration.type,
            labelText: labelText,
            bounds: declaration.type == .histogram ? declaration.bounds : nil
        )
        client.indexByID[declaration.id] = index
        client.identities[identity] = index
        client.declarationHashes.append(fullHash)
        client.familyCounts[familyIndex, default: 0] += 1
        client.labelBytes += bytes
        state.labelBytes += bytes
        state.families.retain(familyIndex)
        state.seriesTotal += 1
        state.usageByUID[uid, default: UIDUsage()].series += 1
        return .success(())
    }

    /// Stops showing the series of `id` (and its added `_peak`), gives back its place under every limit
    /// and forgets its identity, so it may be declared again, under this id or another. A waiting
    /// declaration of `id` is forgotten, and an id whose declaration was dropped is marked retired (its
    /// place among the dropped ids given back). An id that is unknown or already retired changes
    /// nothing: a retire can pass a declaration the daemon refused, and repeating one does no harm.
    func retire(_ id: UInt32, in client: inout ClientState, state: inout State) {
        guard let index = client.indexByID[id], index != ClientState.retiredID else { return }
        if index >= 0 {
            hide(Int(index), of: &client, state: &state)
            if let peak = client.peaks.removeValue(forKey: index) {
                hide(Int(peak.derivedIndex), of: &client, state: &state)
            }
            client.declaredPeaks.remove(index)
            client.refusedPeaks[index] = nil
        } else if index == ClientState.pendingID {
            Self.forgetPending(id, of: &client, in: &state)
        } else {
            client.droppedIDs -= 1
            Self.forgetConflicted(id, of: &client, in: &state)
        }
        // The id stays known, marked, for the next `maxSeriesPerClient` retirements: values the client
        // collected before it retired the series may still be on their way, and an unknown id would
        // refuse their frame. Only that long, so a client that keeps retiring new ids leaves no trail.
        client.indexByID[id] = ClientState.retiredID
        client.retiredIDs.append(id)
        if client.retiredIDs.count >= 2 * limits.maxSeriesPerClient {
            let forgotten = client.retiredIDs.count - limits.maxSeriesPerClient
            for old in client.retiredIDs.prefix(forgotten) where client.indexByID[old] == ClientState.retiredID {
                client.indexByID[old] = nil
            }
            client.retiredIDs.removeFirst(forgotten)
        }
    }

    /// Hides series `index` and gives back what it held. Its identity and bytes are worked out again
    /// from the stored name and labels rather than kept per series: retiring is rare, and 16
    /// bytes more a series took a million series from 81 to 103 bytes each (`make bench`).
    private func hide(_ index: Int, of client: inout ClientState, state: inout State) {
        guard client.retired.insert(Int32(index)).inserted else { return }
        let family = Int(client.table.family[index])
        // The client holds its families, so this one is still there until released below.
        let name = state.families.families[family]?.name ?? ""
        let labelText = client.table.labels(of: index)
        let labels = Escaping.labels(fromText: client.table.labelArena[labelText])
        client.identities[SeriesIdentity.hash(name: name, labels: labels)] = nil
        let bounds = client.table.histograms[Int32(index)].map { client.table.boundSets[$0.boundSet].bounds.count }
        let bytes = Self.chargedBytes(
            name: name, labelText: labelText.count, connectionLabels: client.labelText.count, bounds: bounds)
        client.table.values[index] = SeriesTable.unset
        Self.releaseFamily(family, count: 1, in: &state)
        client.familyCounts[family, default: 1] -= 1
        if client.familyCounts[family] == 0 { client.familyCounts[family] = nil }
        client.labelBytes -= bytes
        client.retiredLabelBytes += bytes
        state.labelBytes -= bytes
        state.seriesTotal -= 1
        state.seriesFreed &+= 1
        state.usageByUID[client.peer.uid, default: UIDUsage()].series -= 1
        Self.uidFreed(client.peer.uid, in: &state)
        if client.waiting == .parkedOnOwn {
            client.waiting = .requeued
            state.requeue.append(client.connection)
        }
    }

    /// What a series counts against the byte budget: about what it adds to `/metrics`. Each line it is
    /// shown on (one for a counter or gauge; for a histogram one per bound, `+Inf`, `_sum` and `_count`)
    /// holds its name as shown (a counter's with `_total`), its labels as stored, rendered and escaped
    /// (`name="value"`, comma-separated), the connection's labels (`process`, `pid`, the hello's), and
    /// about `lineOverhead` bytes more for the value, the separators and a bucket's suffix and `le`.
    static func chargedBytes(name: String, labelText: Int, connectionLabels: Int, bounds: Int?) -> Int {
        let lines = bounds.map { $0 + 3 } ?? 1
        return lines * (name.utf8.count + labelText + connectionLabels + lineOverhead)
    }

    static let lineOverhead = 32

    /// The lines the daemon adds for every connection that said hello, each with the connection's labels:
    /// its status and the six `/proc` series (`ExpositionRenderer.writeClientStatus`, `writeKernelSeries`).
    static let connectionLineNames = [
        "taskwatch_client_up", "taskwatch_client_last_report_timestamp_seconds",
        "swift_process_cpu_seconds_total", "swift_process_open_fds", "swift_process_resident_memory_bytes",
        "swift_process_start_time_seconds", "swift_process_threads", "swift_process_virtual_memory_bytes",
    ]

    /// What a connection's own lines count against `RegistryLimits.maxLabelBytes`, as `chargedBytes`
    /// counts a series' lines. Not against the connection's budget, which is for what it declares.
    static func connectionLineBytes(connectionLabels: Int) -> Int {
        connectionLineNames.reduce(0) { $0 + $1.utf8.count + connectionLabels + lineOverhead }
    }

    /// The limit a `client_limit` or `global_limit` drop ran into, for its log line.
    func limit(of reason: SeriesRejection) -> Int? {
        switch reason {
        case .clientLimit: limits.maxSeriesPerClient
        case .globalLimit: limits.maxSeries
        case .uidLimit: limits.maxSeriesPerUID
        default: nil
        }
    }
}
