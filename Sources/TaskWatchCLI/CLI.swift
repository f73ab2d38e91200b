import ArgumentParser

/// CLI.
public enum TaskWatchCLIInfo {}
