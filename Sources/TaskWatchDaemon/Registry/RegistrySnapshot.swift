import Synchronization
import TaskWatchWire

/// A consistent view of the registry at one moment, taken in O(clients) under the lock.
struct RegistrySnapshot {
    struct FamilyInfo {
        let index: Int
        let name: String
        let type: SeriesType
        let help: String
    }

    struct ClientView {
        let pid: Int32
        let processStartTicks: UInt64?
        let labelText: [UInt8]
        let connected: Bool
        let lastReport: Double
        let table: SeriesTable
    }

    var families: [FamilyInfo]
    /// One more than the highest family index in use: the size of an array indexed by family.
    var familySlots: Int
    var clients: [ClientView]
    var stats: Registry.Stats
    var seriesTotal: Int
    var connectedCount: Int
}

extension Registry {
    /// Takes a snapshot. Series data is shared copy-on-write, so this copies no values.
    func snapshot() -> RegistrySnapshot {
        var snapshot = state.withLock { state in
            var clients: [RegistrySnapshot.ClientView] = []
            clients.reserveCapacity(state.clients.count)
            for id in Array(state.clients.keys) {
                guard state.clients[id]?.hello != nil else { continue }
                state.clients[id]!.table.refreshOrder()
                let client = state.clients[id]!
                clients.append(
                    .init(
                        pid: client.peer.pid, processStartTicks: client.processStartTicks,
                        labelText: client.labelText, connected: client.connected, lastReport: client.lastReport,
                        table: client.table))
            }
            var families: [RegistrySnapshot.FamilyInfo] = []
            for (index, family) in state.families.families.enumerated() {
                guard let family else { continue }
                families.append(.init(index: index, name: family.name, type: family.type, help: family.help))
            }
            return RegistrySnapshot(
                families: families, familySlots: state.families.families.count, clients: clients,
                stats: state.stats, seriesTotal: state.seriesTotal, connectedCount: state.connectedCount)
        }
        // Sorted after the lock is released: ingest need not wait for it.
        snapshot.clients.sort { $0.pid < $1.pid }
        snapshot.families.sort { $0.name < $1.name }
        return snapshot
    }
}
