import TaskWatchCLI

print("taskwatch")
