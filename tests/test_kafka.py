from pathlib import Path

from worker.kafka import make_app
from worker.settings import load_settings


def test_the_app_keeps_its_files_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9", data_dir=tmp_path / "data")
    app = make_app(settings)
    assert Path(app.conf.datadir).is_relative_to(tmp_path / "data")
    assert (tmp_path / "data" / "faust").is_dir()
