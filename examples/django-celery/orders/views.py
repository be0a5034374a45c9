from django.http import JsonResponse


def healthz(request):
    """Liveness: the process serves requests (the HEALTHCHECK and the smoke test call it)."""
    return JsonResponse({"status": "ok"})
