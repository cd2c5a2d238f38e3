"""The run's settings in TensorBoard's HPARAMS tab."""

import time

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2


class HparamsSummary(L.Callback):
    """The run's settings (`params`: flat, plain values) in TensorBoard's HPARAMS tab: a session-start summary when
    training starts, a session-end one (success, or failure when it stopped or failed) when it ends. The tab takes
    a session's metrics from the scalars of its run (val/loss, val_at_logsnr/*, metrics/fid, ...), at their last
    step, so a running run shows its latest values. No experiment summary: TensorBoard reads one run's only and would
    hide the settings other runs of a sweep have (a cosine schedule's s beside a linear one's beta_end); without it,
    it gathers them from every run's session start."""

    def __init__(self, params: dict):
        self.params = params

    def on_train_start(self, trainer, pl_module):
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for name, value in self.params.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value = value
            else:
                start.hparams[name].string_value = "null" if value is None else str(value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        self._write(trainer, metadata.SESSION_START_INFO_TAG, data)

    def on_train_end(self, trainer, pl_module):
        self._end(trainer, api_pb2.STATUS_SUCCESS)

    def on_exception(self, trainer, pl_module, exception):
        self._end(trainer, api_pb2.STATUS_FAILURE)

    def _end(self, trainer, status) -> None:
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        self._write(trainer, metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))

    @staticmethod
    def _write(trainer, tag: str, data) -> None:
        if not trainer.is_global_zero:
            return
        value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # At the run's step, as Lightning logs its scalars: TensorBoard drops a tag's events that a later
                # one of the same tag steps back behind.
                logger.experiment.file_writer.add_summary(Summary(value=[value]), trainer.global_step)
