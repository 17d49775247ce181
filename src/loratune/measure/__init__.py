"""Measurement: the peak memory real training steps reach (to check the estimate against)."""

from loratune.measure.peak_memory import CPU_MODES, MeasuredMemory, PeakMemory, measure_training_peak, wrap_with_peft

__all__ = ["CPU_MODES", "MeasuredMemory", "PeakMemory", "measure_training_peak", "wrap_with_peft"]
