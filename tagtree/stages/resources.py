"""The clients stages need -- embedder, tagger, chat model, object store -- built once from the
config on first use and shared by every stage of a run; tests and notebooks hand in their own
(fakes that follow ``tagtree.protocols``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Resources:
    """``embedder``: ``tagtree.protocols.Embedder``; ``tagger``: ``tagtree.annotation.Tagger``;
    ``chat``: ``tagtree.protocols.ChatModel``; ``objects``: ``tagtree.io.objectstore.Objects``.
    Any left None is built from the stage's config when a stage first needs it, then kept."""

    embedder: Any = None
    tagger: Any = None
    chat: Any = None
    objects: Any = None
    _built: dict[str, Any] = field(default_factory=dict, repr=False)
    _own_embedder: bool = field(default=False, repr=False)

    def embedder_for(self, config) -> Any:
        if self.embedder is None:
            from tagtree.io.embedder import make_embedder

            self.embedder = make_embedder(config)
            self._own_embedder = True
        return self.embedder

    def tags_as_configured(self) -> bool:
        """No tagger or embedder was handed in: the tagger is the one the config builds (so
        worker processes can build it too)."""
        return self.tagger is None and (self.embedder is None or self._own_embedder)

    def chat_for(self, config) -> Any:
        if self.chat is None:
            from tagtree.io.chat import make_chat_model

            self.chat = make_chat_model(config)
        return self.chat

    @contextlib.contextmanager
    def open_chat(self, config) -> Iterator[Any]:
        """The chat model handed in, or the configured endpoint, or -- with none configured --
        the offline model on a local server for the block (as ``open_tagger`` does)."""
        if self.chat is not None:
            yield self.chat
            return
        from tagtree.io.chat import open_chat_model

        with open_chat_model(config) as chat:
            yield chat

    @contextlib.contextmanager
    def open_tagger(self, config) -> Iterator[Any]:
        """The tagger handed in, or the configured one for the block (a local model server,
        when the config asks for one, runs only that long)."""
        if self.tagger is not None:
            yield self.tagger
            return
        from tagtree.io.annotator import open_tagger, uses_llm

        # The keyphrase tagger embeds with the shared embedder; an LLM tagger needs none.
        embedder = None if uses_llm(config) else self.embedder_for(config)
        with open_tagger(config, embedder=embedder) as tagger:
            yield tagger

    def objects_for(self, config, uri: str) -> Any:
        """The object store holding ``uri`` (s3:// or a local path)."""
        if self.objects is not None:
            return self.objects
        from tagtree.io.objectstore import objects_for

        # A Prefect credentials block (objects.credentials_block) is the Prefect layer's to
        # load; here boto3's own chain (environment, profile, instance role) applies.
        o = config.objects
        key = "s3" if uri.startswith("s3://") else "local"
        if key not in self._built:
            self._built[key] = objects_for(uri, endpoint_url=o.endpoint_url, region=o.region,
                                           timeout_s=o.timeout_s)
        return self._built[key]


def resources_or_new(resources: Resources | None) -> Resources:
    return resources if resources is not None else Resources()
