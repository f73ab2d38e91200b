import TaskWatchDaemon

print(TaskWatchDaemonInfo.version)
