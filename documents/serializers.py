"""API shapes. Documents and shipments are named by their public UUID (`id`)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from .models import Document


class DocumentSerializer(serializers.ModelSerializer[Document]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    shipment = serializers.UUIDField(source="shipment.public_id", read_only=True, default=None)
    shipment_number = serializers.CharField(source="shipment.number", read_only=True, default=None)
    source_message = serializers.UUIDField(source="source_message.public_id", read_only=True, default=None)
    matched_by = serializers.UUIDField(source="matched_by.public_id", read_only=True, default=None)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id", "filename", "content_type", "size", "sha256", "kind", "status", "error", "match_state",
            "matched_via", "matched_by", "matched_at", "candidates", "shipment", "shipment_number",
            "source_message", "created_at", "processed_at", "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, document: Document) -> str | None:
        if not document.downloadable:
            return None
        return reverse("document-api-download", kwargs={"id": document.public_id})


class DocumentDetailSerializer(DocumentSerializer):
    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "extracted_text"]
        read_only_fields = fields


class DocumentMatchSerializer(serializers.Serializer[Any]):
    shipment = serializers.CharField(max_length=64, help_text="The shipment's id (UUID) or number (SHP-000123).")
