import Foundation

/// Writes `line` to stdout at once. Not `print`: stdout is block-buffered into a file or pipe (a log,
/// `make run | tee`), which held the start-up banner back until exit.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
