import Glibc

/// The process's limit on open file descriptors, which client connections and HTTP connections share.
enum FileDescriptorLimit {
    /// Descriptors kept besides clients and HTTP connections: listeners, epoll and event descriptors,
    /// `/proc` reads, the journal, libmicrohttpd's own.
    static let reserve = 64

    /// Raises the soft limit to the hard one, as Go's runtime does at start: the usual soft limit,
    /// 1,024, is below the default client cap alone, and past it a flood of clients leaves none for
    /// `/metrics`. Returns the soft limit in force, `Int.max` when unlimited or unknown.
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
    }

    /// The client and HTTP connection caps that fit under `limit` with the reserve: as requested when
    /// they fit; otherwise HTTP connections keep at most half of the room and clients take the rest, so
    /// neither can starve the other of descriptors.
    static func caps(clients: Int, httpConnections: Int, limit: Int) -> (clients: Int, httpConnections: Int) {
        guard limit != Int.max else { return (clients, httpConnections) }
        let room = max(2, limit - reserve)
        if clients <= room - httpConnections { return (clients, httpConnections) }
        let http = max(1, min(httpConnections, room / 2))
        return (max(1, min(clients, room - http)), http)
    }
}
