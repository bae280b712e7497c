"""The handle on one attachment: :class:`AttachmentView` reads it, :class:`Attachment`
(a view too) changes it; a private attachment (``persist=False``) is an Attachment with
no pin store. Both know when the attachment they opened has ended."""

from pingkiller.attachment.view import AttachmentView
from pingkiller.attachment.writer import Attachment, Staged

__all__ = ["Attachment", "AttachmentView", "Staged"]
