from celery import shared_task

from .models import Order


@shared_task
def count_orders():
    return Order.objects.count()
