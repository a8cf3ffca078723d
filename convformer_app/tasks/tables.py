"""A task model's shape table and diagram: the backbone's rows as Explore shows a classifier's, then the task's
rows (convformer.tasks.task_shape_rows: named axes of their own) and a total of both."""
from __future__ import annotations

from .. import i18n, views
from ..i18n import text
from . import results


def shape_views(rows: list, fusion: str) -> tuple[dict, str]:
    """(the shape table, the diagram) of any Run's rows: a classifier's as views makes them; a task model's
    backbone rows the same way, then the task's rows (named axes of their own) and a total of both."""
    backbone_rows, task_rows = results.split_rows(rows)
    if not task_rows:
        return views.table(rows), views.diagram_html(rows, fusion)
    return task_table(rows), views.diagram_html(backbone_rows, fusion) + results.task_diagram(task_rows)


def task_table(rows: list) -> dict:
    """The shape table of a task model: the backbone's rows (views.table), then the task's, then the total
    of both."""
    backbone_rows, task_rows = results.split_rows(rows)
    table = views.table(backbone_rows)
    body = table["data"][:-1] if table["data"] else []
    total = [text("table.total"), "", "", views.human(sum(x.params for x in rows)),
             views.human(sum(x.flops for x in rows)), ""]
    table["data"] = [*body, *results.task_table_rows(task_rows, i18n.translate), total]
    return table
