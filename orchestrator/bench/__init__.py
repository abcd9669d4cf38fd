"""``sbx bench``: each figure beside a baseline measured in the same run.

``channel`` times our call path against ``docker exec``/``docker run``;
``tools`` the editor and code execution; ``desktop`` screenshots and input
against scrot and ImageMagick; ``http`` the HTTP API against the channel
call it wraps; ``agent`` a long screenshot run with context management
against the same run without.  ``timing`` holds what they share.
"""

from orchestrator.bench.timing import measure, percentile

__all__ = ["measure", "percentile"]
