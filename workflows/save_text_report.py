"""Save a titled Markdown report as an artifact."""

import datetime


def run(title: str, body: str, name: str = "") -> dict:
    """Write a Markdown report with a title and timestamp and save it as an artifact.

    Returns the artifact's index entry; the name defaults to a slug of the title.
    """
    slug = name or "reports/" + "-".join(title.lower().split())[:60] + ".md"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"# {title}\n\n_{stamp}_\n\n{body.strip()}\n"
    return artifacts.save(slug, text, description=f"Report: {title}")  # noqa: F821
