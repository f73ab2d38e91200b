import CoreMetrics
import TaskWatch

/// swift-metrics backend.
public enum TaskWatchMetricsInfo {}
