"""The Label Studio labelling config (XML) of single-label image classification.

:func:`labeling_config` writes it; :func:`parse_labeling_config` reads the parts skpeal
needs from any project's config. Standard library only.
"""

import xml.etree.ElementTree as ET
from typing import NamedTuple
from xml.sax.saxutils import quoteattr

__all__ = ["LabelingInterface", "labeling_config", "parse_labeling_config"]


class LabelingInterface(NamedTuple):
    """What skpeal needs from a Label Studio labelling config.

    Attributes
    ----------
    from_name : str
        The ``name`` of the ``<Choices>`` tag (results carry it as ``from_name``).
    to_name : str
        Its ``toName``: the ``name`` of the image tag.
    data_key : str
        The task ``data`` field holding the image (``value="$image"`` gives ``"image"``).
    choices : tuple of str
        The values results use, in the config's order (a ``<Choice>``'s ``alias`` when it
        has one, else its ``value``).
    """

    from_name: str
    to_name: str
    data_key: str
    choices: tuple


def _class_strings(classes, name="classes"):
    if classes is None or isinstance(classes, (str, bytes)):
        raise ValueError(f"{name} must be a list of class labels, got {classes!r}")
    values = [str(c) for c in classes]
    if not values:
        raise ValueError(f"{name} is empty: give at least one class")
    if any(not v.strip() for v in values):
        raise ValueError(f"{name} contains an empty label")
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"{name} repeats {dup} (as text, which is what Label Studio stores)")
    return values


def labeling_config(classes, *, from_name="choice", to_name="image", data_key="image"):
    """The Label Studio labelling config (XML) for single-label image classification.

    Paste it into Label Studio under Settings -> Labeling Interface -> Code.

    Parameters
    ----------
    classes : list
        The class labels (written as text, in this order).
    from_name : str, default="choice"
        ``name`` of the ``<Choices>`` tag.
    to_name : str, default="image"
        ``name`` of the ``<Image>`` tag.
    data_key : str, default="image"
        Task ``data`` field of the image (``value="$image"``).

    Returns
    -------
    config : str

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import labeling_config
    >>> print(labeling_config(["cat", "dog"]))
    <View>
      <Image name="image" value="$image"/>
      <Choices name="choice" toName="image" choice="single" showInLine="true">
        <Choice value="cat"/>
        <Choice value="dog"/>
      </Choices>
    </View>
    """
    values = _class_strings(classes)
    for name, v in (("from_name", from_name), ("to_name", to_name), ("data_key", data_key)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    lines = ["<View>",
             f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + data_key)}/>",
             f"  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} "
             'choice="single" showInLine="true">']
    lines += [f"    <Choice value={quoteattr(v)}/>" for v in values]
    lines += ["  </Choices>", "</View>"]
    return "\n".join(lines)


def parse_labeling_config(config):
    """Find the ``<Choices>`` tag, its image and its choices in a labelling config.

    Parameters
    ----------
    config : str
        A Label Studio labelling config (XML), e.g. ``project.label_config``.

    Returns
    -------
    interface : LabelingInterface

    Raises
    ------
    ValueError
        If the config is not XML, has no ``<Choices>`` tag, or its ``toName`` names no
        tag with a ``value="$..."``.

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import labeling_config, parse_labeling_config
    >>> parse_labeling_config(labeling_config(["cat", "dog"]))
    LabelingInterface(from_name='choice', to_name='image', data_key='image', choices=('cat', 'dog'))
    """
    if not isinstance(config, str) or not config.strip():
        raise ValueError("the labeling config is empty: give Label Studio's XML config")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise ValueError(f"the labeling config is not valid XML: {exc}") from None
    tags = list(root.iter())
    choices_tag = next((t for t in tags if t.tag == "Choices"), None)
    if choices_tag is None:
        raise ValueError("the labeling config has no <Choices> tag: skpeal classifies "
                         "images, use e.g. <Choices name=\"choice\" toName=\"image\">")
    from_name = choices_tag.get("name")
    to_name = choices_tag.get("toName")
    if not from_name or not to_name:
        raise ValueError("the <Choices> tag needs both a name and a toName attribute")
    target = next((t for t in tags if t.get("name") == to_name and t is not choices_tag), None)
    value = None if target is None else target.get("value", "")
    if not value or not value.startswith("$"):
        raise ValueError(f"the <Choices> tag points to toName={to_name!r}, but no tag named "
                         f"{to_name!r} with value=\"$...\" exists (e.g. <Image "
                         f"name=\"{to_name}\" value=\"$image\"/>)")
    values = tuple(c.get("alias") or c.get("value") or "" for c in choices_tag.iter("Choice"))
    return LabelingInterface(from_name, to_name, value[1:].split(".")[0], values)
