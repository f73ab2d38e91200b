import TaskWatchCLI

TaskWatchCommand.main()
