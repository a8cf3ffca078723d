"""The command line: info prints the shape table, predict prints classes, errors are messages."""
import pytest
from PIL import Image

from convformer.__main__ import main


def test_info_prints_the_table(capsys):
    assert main(["info", "--fusion", "late", "--img-size", "64", "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    assert "(B=1, C=3, H=64, W=64)" in out and "(B=1, classes=3)" in out and "total" in out
    assert "merge            cnn (B=1, C=256) + vit (B=1, D=192)" in out  # both branches of the merge
    assert "N = 1 + 4 x 4 = 17" in out  # tokens spelled out: prefix + h x w


def test_info_refuses_an_impossible_config(capsys):
    assert main(["info", "--fusion", "vit", "--img-size", "7"]) == 2
    assert "img_size" in capsys.readouterr().err


def test_predict_prints_top_k(tmp_path, capsys):
    path = tmp_path / "x.png"
    Image.new("RGB", (64, 64), "blue").save(path)
    assert main(["predict", str(path), "--fusion", "cnn", "--top-k", "3", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("%" in line for line in lines)


def test_predict_refuses_a_non_image(tmp_path, capsys):
    path = tmp_path / "x.png"
    path.write_text("hello")
    assert main(["predict", str(path), "--fusion", "mid"]) == 2
    assert "not an image" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["info", "--fusion", "nope"], []])
def test_bad_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit):
        main(argv)
