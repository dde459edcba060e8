"""``sleeptime predictability``: mean log P(question | context) on the local model."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sleeptime.cli.common import (
    DbOpt,
    app,
    open_client,
)
from sleeptime.errors import InvalidInput


@app.command("predictability")
def predictability_cmd(
    namespace: str,
    context_id: str,
    question: str,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="a llama.cpp model: 'local' or 'local:PATH' (default: bundled)"
        ),
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Mean log P(question | context) on the local model (closer to 0 = more predictable)."""
    from sleeptime.llm.local import LocalChatModel
    from sleeptime.llm.resolve import resolve_model
    from sleeptime.predictability import score

    client = open_client("fake", database_url, existing=True)  # the context comes from the store
    ctx = client.context(namespace, context_id)
    spec = model or (
        client.settings.model if client.settings.model.startswith("local") else "local"
    )
    llm = resolve_model(spec, client.settings)
    if not isinstance(llm, LocalChatModel):
        raise InvalidInput(
            f"predictability needs a llama.cpp model ('local' or 'local:PATH'), not {spec!r}"
        )
    res = score(ctx.text, question, llm, namespace=namespace)
    out = {"namespace": namespace, "context_id": context_id, "version": ctx.version}
    out |= {"question": question, "model": llm.display_name, **res.__dict__}
    print(json.dumps(out, indent=2))
