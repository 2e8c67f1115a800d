from rest_framework import serializers

from .models import Staff


class StaffSerializer(serializers.ModelSerializer[Staff]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    active = serializers.BooleanField(source="user.is_active", read_only=True)

    class Meta:
        model = Staff
        fields = ["id", "name", "email", "role", "active", "created_at"]
        read_only_fields = fields
