import TaskWatchWire

extension Registry {
    /// Counts an entry of a values, histograms or peaks frame for an id not shown: when its declaration
    /// waits, by the limit it waits on; when it is kept after a conflict, as `conflict`, so that a name
    /// held by another family shows as values lost for as long as it lasts, not only once. (Entries for
    /// ids dropped for good or retired are not counted.)
    @inline(__always)
    private static func countSkipped(
        _ id: UInt32, marker: Int32, in client: borrowing ClientState, stats: inout Stats
    ) {
        if marker == ClientState.pendingID, let reason = client.pending[id]?.reason {
            stats.droppedValues[reason, default: 0] += 1
        } else if marker == ClientState.droppedID, !client.conflicted.isEmpty, client.conflicted[id] != nil {
            stats.droppedValues[.conflict, default: 0] += 1
        }
    }

    /// Resolves an id to a series index: nil for an id refused at declaration or retired, failure when
    /// unknown.
    private func lookup(_ id: UInt32, in client: ClientState) -> Result<Int?, FrameRejection> {
        guard let index = client.indexByID[id] else { return .failure(.unknownSeries) }
        return .success(index < 0 ? nil : Int(index))
    }

    /// Reads the `(id, value)` entries of a values or peaks frame and checks every one before any is
    /// applied, so a frame is taken whole or not at all: unknown ids and NaN are refused, ids refused at
    /// declaration are skipped, and `check` judges the rest by series index.
    ///
    /// Always inlined: this is the ingest hot path, and as a call of its own (with `check` as a closure
    /// and `client` passed by value) it cost 5–10 % of batched ingest throughput in retains, releases
    /// and the call itself (`perf record` of 100-update frames).
    @inline(__always)
    private func checkedEntries(
        _ reader: FrameReader,
        in client: ClientState,
        check: (Int, Double) -> FrameRejection?
    ) -> Result<ValueEntries, FrameRejection> {
        var reader = reader
        let entries: ValueEntries
        do { entries = try ValueEntries(from: &reader) } catch { return .failure(FrameRejection(error)) }
        for (id, value) in entries {
            switch lookup(id, in: client) {
            case .failure(let reason): return .failure(reason)
            case .success(nil): continue
            case .success(let index?):
                if value.isNaN { return .failure(.invalidValue) }
                if let reason = check(index, value) { return .failure(reason) }
            }
        }
        return .success(entries)
    }

    /// Applies absolute counter and gauge values. Every entry is checked before any is applied, so a
    /// frame is taken whole or not at all.
    func applyValues(
        _ reader: FrameReader, to client: inout ClientState, stats: inout Stats
    ) -> Result<Void, FrameRejection> {
        let entries: ValueEntries
        switch checkedEntries(
            reader, in: client,
            check: { index, value in
                switch client.table.types[index] {
                case .gauge: return nil
                case .histogram: return .typeMismatch
                case .counter:
                    if !value.isFinite || value < 0 { return .invalidValue }
                    let current = client.table.values[index]
                    let decreased = current.bitPattern != SeriesTable.unset.bitPattern && value < current
                    return decreased ? .counterDecrease : nil
                }
            })
        {
        case .failure(let reason): return .failure(reason)
        case .success(let checked): entries = checked
        }
        for (id, value) in entries {
            let index = client.indexByID[id] ?? ClientState.droppedID
            guard index >= 0 else {
                Self.countSkipped(id, marker: index, in: client, stats: &stats)
                continue
            }
            client.table.values[Int(index)] = value
            if !client.peaks.isEmpty, let peak = client.peaks[index] {
                let derived = Int(peak.derivedIndex)
                let shown = client.table.values[derived]
                if shown.bitPattern == SeriesTable.unset.bitPattern || value > shown {
                    client.table.values[derived] = value
                }
            }
        }
        return .success(())
    }

    /// Records peak samples for gauges and keeps their derived `_peak` series current.
    func applyPeaks(
        _ reader: FrameReader,
        to client: inout ClientState,
        state: inout State,
        now: UInt64,
        warnings: inout [RefusalLine]
    ) -> Result<Void, FrameRejection> {
        let entries: ValueEntries
        switch checkedEntries(
            reader, in: client,
            check: { index, _ in
                client.table.types[index] == .gauge ? nil : .typeMismatch
            })
        {
        case .failure(let reason): return .failure(reason)
        case .success(let checked): entries = checked
        }
        // No separate pass folds a frame's samples to one per gauge: they all carry this frame's `now`,
        // so they fall in one slot of the gauge's window, which keeps only their maximum (PeakWindow).
        for (id, value) in entries {
            let index = client.indexByID[id] ?? ClientState.droppedID
            guard index >= 0 else {
                Self.countSkipped(id, marker: index, in: client, stats: &state.stats)
                continue
            }
            if client.peaks[index] == nil {
                if client.declaredPeaks.contains(index) { continue }
                // Refused at a limit: tried again only once a series has gone somewhere, as nothing
                // else can make room.
                if client.refusedPeaks[index] == state.seriesFreed { continue }
                guard let derived = declarePeak(of: Int(index), in: &client, state: &state, warnings: &warnings)
                else { continue }
                client.refusedPeaks[index] = nil
                client.peaks[index] = PeakState(
                    derivedIndex: derived, window: PeakWindow(window: limits.peakWindowNanoseconds))
            }
            client.peaks[index]?.window.add(value, at: now)
            refreshPeak(of: index, in: &client, now: now)
        }
        // Only the gauges in the frame: refreshing all of them cost O(every gauge of the client) a
        // frame, so one-entry frames from a client with 10,000 gauges made each frame 10,000 times
        // the work. The others' windows move on at the tick, every 100 ms.
        return .success(())
    }

    /// Creates `<gauge>_peak` with the gauge's labels, under the same limits as a declaration.
    private func declarePeak(
        of index: Int, in client: inout ClientState, state: inout State, warnings: inout [RefusalLine]
    ) -> Int32? {
        guard let gauge = state.families.families[Int(client.table.family[index])] else { return nil }
        let name = gauge.name + "_peak"
        let labels = Array(client.table.labelArena[client.table.labels(of: index)])
        // The same identity a declaration of `<gauge>_peak` with these labels gets, so that either one
        // coming second is refused as `duplicate_series`, whichever order they arrive in: a hash of
        // the rendered bytes never matched a declaration's, and both series were exposed.
        let identity = SeriesIdentity.hash(name: name, labels: Escaping.labels(fromText: labels[...]))
        // Charged like a declared series: it is one more line on /metrics for every gauge with peaks.
        let bytes = Self.chargedBytes(
            name: name, labelText: labels.count, connectionLabels: client.labelText.count, bounds: nil)
        let help = "Highest value of \(gauge.name) sampled within the peak window."
        let helpBytes = state.families.contains(name) ? 0 : help.utf8.count
        let result: Result<Int, SeriesRejection>
        if client.identities[identity] != nil {
            result = .failure(.duplicateSeries)
        } else if let blocked = state.waitBlocked {
            // Room freed is kept for the declarations that wait for it, as from a new declaration.
            result = .failure(blocked)
        } else if limits.maxSeriesPerUID > 0, state.parkedByUID[client.peer.uid] != nil {
            result = .failure(.uidLimit)
        } else if client.liveCount >= limits.maxSeriesPerClient {
            result = .failure(.clientLimit)
        } else if state.seriesTotal >= limits.maxSeries {
            result = .failure(.globalLimit)
        } else if limits.maxSeriesPerUID > 0,
            state.usageByUID[client.peer.uid, default: UIDUsage()].series >= limits.maxSeriesPerUID
        {
            result = .failure(.uidLimit)
        } else if client.labelBytes + bytes > limits.maxLabelBytesPerClient
            || state.labelBytes + state.families.helpBytes + helpBytes + bytes > limits.maxLabelBytes
        {
            result = .failure(.byteLimit)
        } else {
            result = state.families.admit(name: name, type: .gauge, labelNames: gauge.labelNames, help: help)
        }
        switch result {
        case .failure(let reason):
            if reason == .duplicateSeries { client.declaredPeaks.insert(Int32(index)) }
            // Counted and logged once per gauge, however often it is tried again: one series dropped.
            guard client.refusedPeaks.updateValue(state.seriesFreed, forKey: Int32(index)) == nil else { return nil }
            state.stats.droppedSeries[reason, default: 0] += 1
            let line = log?.seriesDropped(
                reason, name: name, type: .gauge, labelNames: gauge.labelNames, client: client,
                limit: limit(of: reason))
            if let line { warnings.append(line) }
            return nil
        case .success(let familyIndex):
            let derived = client.table.append(family: familyIndex, type: .gauge, labelText: labels, bounds: nil)
            client.identities[identity] = derived
            client.declarationHashes.append(identity)
            client.familyCounts[familyIndex, default: 0] += 1
            client.labelBytes += bytes
            state.labelBytes += bytes
            state.families.retain(familyIndex)
            state.seriesTotal += 1
            state.usageByUID[client.peer.uid, default: UIDUsage()].series += 1
            return derived
        }
    }

    /// Sets every derived peak to the window's maximum, never below the gauge's current value.
    /// Every gauge's derived peak, at the daemon's tick. In place, through the dictionary's indices: a
    /// lookup and a store of each `PeakState` by key (as `refreshPeak` does for one gauge) took an idle
    /// release daemon with 50,000 gauges with peaks to 5.8–6.6 % of a core, this 3.1–3.9 %
    /// (`scripts/bench-peak-tick.py NEW OLD`).
    func refreshPeaks(of client: inout ClientState, now: UInt64) {
        var index = client.peaks.startIndex
        while index != client.peaks.endIndex {
            let gauge = Int(client.peaks.keys[index])
            let derived = Int(client.peaks.values[index].derivedIndex)
            var shown = client.table.values[gauge]
            if let windowMax = client.peaks.values[index].window.maximum(at: now) {
                shown = shown.bitPattern == SeriesTable.unset.bitPattern ? windowMax : max(shown, windowMax)
            }
            // Unchanged, not stored: the first store after a scrape's snapshot copies the whole table.
            if client.table.values[derived].bitPattern != shown.bitPattern { client.table.values[derived] = shown }
            client.peaks.formIndex(after: &index)
        }
    }

    /// Sets one gauge's derived peak to its window's maximum, never below the gauge's current value.
    private func refreshPeak(of gauge: Int32, in client: inout ClientState, now: UInt64) {
        guard var peak = client.peaks[gauge] else { return }
        var shown = client.table.values[Int(gauge)]
        if let windowMax = peak.window.maximum(at: now) {
            shown = shown.bitPattern == SeriesTable.unset.bitPattern ? windowMax : max(shown, windowMax)
        }
        client.table.values[Int(peak.derivedIndex)] = shown
        client.peaks[gauge] = peak
    }

    /// Applies absolute histogram states, whole frame or nothing.
    func applyHistograms(
        _ updates: [HistogramUpdate],
        to client: inout ClientState,
        stats: inout Stats
    ) -> Result<Void, FrameRejection> {
        for update in updates {
            switch lookup(update.id, in: client) {
            case .failure(let reason): return .failure(reason)
            case .success(nil): continue
            case .success(let index?):
                guard let slot = client.table.histograms[Int32(index)] else { return .failure(.typeMismatch) }
                let bounds = client.table.boundSets[slot.boundSet].bounds
                if update.buckets.count != bounds.count + 1 { return .failure(.bucketMismatch) }
                if update.sum.isNaN { return .failure(.invalidValue) }
                // The exposition adds the buckets up into the cumulative `le` lines and `_count`: a
                // total past UInt64.max would wrap there, giving falling buckets and a wrong count.
                var total: UInt64 = 0
                for count in update.buckets {
                    let (next, overflow) = total.addingReportingOverflow(count)
                    if overflow { return .failure(.invalidValue) }
                    total = next
                }
                for (offset, count) in update.buckets.enumerated()
                where count < client.table.bucketCounts[slot.offset + offset] {
                    return .failure(.counterDecrease)
                }
            }
        }
        for update in updates {
            let index = client.indexByID[update.id] ?? ClientState.droppedID
            guard index >= 0, let slot = client.table.histograms[index] else {
                Self.countSkipped(update.id, marker: index, in: client, stats: &stats)
                continue
            }
            client.table.values[Int(index)] = update.sum
            for (offset, count) in update.buckets.enumerated() {
                client.table.bucketCounts[slot.offset + offset] = count
            }
        }
        return .success(())
    }
}
