"""MolmoNodeParser: one ``ImageNode`` per photo, slide and video segment, so the picture
survives every LlamaIndex path.

A vector store keeps a node's class by name and rebuilds only ``ImageNode`` with its
picture: an ``ImageDocument`` stored as it is comes back as a ``TextNode`` without one,
and a text splitter gives each node a new id. This parser turns every document that holds
a picture (``image_resource``, or an ``image_path`` / ``image_url`` in metadata) into a
single ``ImageNode`` whose id is the document's (for ``MolmoReader`` documents: the Qdrant
point id of ``molmo-rag index``), with the text, metadata and exclusions it had; documents
without a picture go to ``text_splitter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, SerializeAsAny
from llama_index.core.node_parser import NodeParser, SentenceSplitter
from llama_index.core.schema import BaseNode, ImageNode, MediaResource, NodeRelationship

__all__ = ["MolmoNodeParser", "to_image_node"]


def _picture(node: BaseNode) -> tuple[str | None, str | None, bytes | None, str | None]:
    """(path, url, base64 data, mimetype) of a node's picture, from its image resource or
    from the ``image_path`` / ``image_url`` metadata molmo-rag writes."""
    resource = getattr(node, "image_resource", None)
    if isinstance(resource, MediaResource) and (resource.path or resource.url or resource.data):
        return (
            str(resource.path) if resource.path else None,
            str(resource.url) if resource.url else None,
            resource.data,
            resource.mimetype,
        )
    if isinstance(node, ImageNode) and (node.image_path or node.image_url or node.image):
        return node.image_path, node.image_url, node.image.encode() if node.image else None, node.image_mimetype
    path, url = node.metadata.get("image_path"), node.metadata.get("image_url")
    if isinstance(path, str) or isinstance(url, str):
        return (path if isinstance(path, str) else None), (url if isinstance(url, str) else None), None, None
    return None, None, None, None


def has_picture(node: BaseNode) -> bool:
    return any(part is not None for part in _picture(node)[:3])


def to_image_node(node: BaseNode) -> ImageNode:
    """The ``ImageNode`` of a document or node holding a picture: the same id, text,
    metadata and exclusions, the picture as ``image_path`` / ``image_url`` / ``image``."""
    path, url, data, mimetype = _picture(node)
    image_node = ImageNode(
        id_=node.id_,
        text=node.get_content(),
        metadata=dict(node.metadata),
        excluded_embed_metadata_keys=list(node.excluded_embed_metadata_keys),
        excluded_llm_metadata_keys=list(node.excluded_llm_metadata_keys),
        metadata_template=node.metadata_template,
        metadata_separator=node.metadata_separator,
        image_path=path,
        image_url=url,
        image=data.decode() if isinstance(data, bytes) else data,
        image_mimetype=mimetype or "image/jpeg",
        embedding=node.embedding,
    )
    relationships = dict(node.relationships)
    if not isinstance(node, ImageNode) or NodeRelationship.SOURCE not in relationships:
        relationships[NodeRelationship.SOURCE] = node.as_related_node_info()
    image_node.relationships = relationships
    return image_node


class MolmoNodeParser(NodeParser):
    """One ``ImageNode`` per photo, slide and video segment, with the document's id.

    Documents holding a picture (``image_resource``, or an ``image_path`` / ``image_url``
    in metadata, as every :class:`~llama_index.readers.molmo.MolmoReader` document does)
    become a single ``ImageNode`` each: same id (the Qdrant point id of ``molmo-rag
    index``), text, metadata and exclusions, the picture as ``image_path`` / ``image_url``
    / ``image``. Any vector store then returns ``ImageNode`` objects, ``MultiModalVectorStoreIndex``
    keeps them, and a ``multimodal=True`` query engine hands the LLM the pictures. The
    rest is split by ``text_splitter``.

    Args:
        text_splitter (NodeParser): splits documents without a picture (default:
            LlamaIndex's ``SentenceSplitter``).

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        from llama_index.core import VectorStoreIndex
        from llama_index.readers.molmo import MolmoEmbedding, MolmoNodeParser, MolmoReader

        documents = MolmoReader(backend="wavespeed").load_data("media/")
        index = VectorStoreIndex.from_documents(
            documents, transformations=[MolmoNodeParser()], embed_model=MolmoEmbedding()
        )
        nodes = MolmoNodeParser().get_nodes_from_documents(documents)  # for index.insert_nodes
        nodes = await MolmoNodeParser().aget_nodes_from_documents(documents)
        ```

    Use it wherever a text splitter would go (``transformations=``, an
    ``IngestionPipeline``, ``Settings.transformations``).
    """

    text_splitter: SerializeAsAny[NodeParser] = Field(
        default_factory=SentenceSplitter,
        description="Splits documents without a picture (default: LlamaIndex's SentenceSplitter).",
    )

    @classmethod
    def class_name(cls) -> str:
        return "MolmoNodeParser"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> "MolmoNodeParser":
        """The parser of :meth:`to_dict`, its ``text_splitter`` rebuilt from its own dict.

        LlamaIndex's node parsers write their ``id_func`` as a name their own ``from_dict``
        cannot read back; the default one is simply left out here, and a custom one is an
        error (a function cannot be rebuilt from JSON: pass it again)."""
        data = {**data, **kwargs}
        data.pop("class_name", None)
        _default_id_func(data, cls.__name__)
        splitter = data.get("text_splitter")
        if isinstance(splitter, dict):
            data["text_splitter"] = _node_parser_from_dict(splitter)
        return cls(**data)

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in nodes:
            if has_picture(node):
                out.append(to_image_node(node))
            else:
                out.extend(self.text_splitter([node], show_progress=False, **kwargs))
        return out

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict) -> list[BaseNode]:
        # An image node is its document: nothing to relate to a neighbour or to copy down.
        return nodes


def _default_id_func(data: dict[str, Any], owner: str) -> None:
    func = data.get("id_func")
    if isinstance(func, dict):
        if func.get("id_func_name") != "default_id_func":
            raise ValueError(
                f"{owner}.from_dict: id_func {func.get('id_func_name')!r} is a function and cannot be rebuilt from a dict; "
                "pass it again as id_func=..."
            )
        del data["id_func"]


def _node_parser_from_dict(data: dict[str, Any]) -> NodeParser:
    """A LlamaIndex node parser from its ``to_dict`` (found by ``class_name`` among the
    node parsers imported in this process)."""
    name = data.get("class_name")
    found = _node_parser_classes().get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"MolmoNodeParser.from_dict: unknown text_splitter class {name!r}; import it first or pass an instance")
    data = dict(data)
    data.pop("class_name", None)
    _default_id_func(data, str(name))
    return found(**data)


def _node_parser_classes() -> dict[str, type[NodeParser]]:
    import llama_index.core.node_parser  # noqa: F401 - the stock parsers, registered as subclasses

    found: dict[str, type[NodeParser]] = {}
    todo: list[type] = [NodeParser]
    while todo:
        klass = todo.pop()
        todo.extend(klass.__subclasses__())
        try:
            found.setdefault(klass.class_name(), klass)
        except Exception:  # an abstract base without a name
            continue
    return found
