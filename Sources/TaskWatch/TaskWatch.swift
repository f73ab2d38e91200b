import TaskWatchWire

/// TaskWatch client library.
public enum TaskWatch {}
